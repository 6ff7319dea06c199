#!/usr/bin/env python3
"""page_oracle.py: differential test of pulse.page against the plain ORDER BY.

Driven by extension/test/page_oracle.sh (which starts the server).  Each
case builds random tables in schema "o" (every sortable type the README
lists, many duplicates and NULLs, NaN and infinities, several collations),
a random query of one of many shapes (joins, outer joins, CTEs, subqueries,
views, grouping sets, DISTINCT, UNION, window functions, LATERAL,
set-returning functions, inheritance, partitions), a random order_by (mixed
directions, NULLS FIRST/LAST, ending in a unique tiebreaker), a random WHERE
with bound args and a random page size, then checks:

  walk     pages forward from the start and backward from the last page
           (prev_cursor) and compares them, row by row, with
           SELECT to_jsonb(q.*) FROM (<query>) q ORDER BY <order>; page sizes
           and the presence of cursors are checked on the way;
  swap     a cursor of the walk used with a query that differs only in a
           literal, another order, other args, another tenant, a cursor of
           the previous case, and truncated, tampered or extended copies of
           it: each must raise SQLSTATE 22023 with "invalid cursor ...".

Seeded and reproducible: case N of seed S uses random.Random("S:N"), so
PAGE_ORACLE_SEED=S PAGE_ORACLE_CASE=N reruns exactly that case.  On the
first failure the case is shrunk (rows of each table, page size, leading
sort keys) while it still fails, and the minimal case is written as a psql
script (DDL, data, the pulse.page calls up to the failing step, the
oracle's query) and printed.  Output is TAP ("ok N - ..."); the exit status
is non-zero on failure.
"""

import argparse
import json
import os
import random
import sys
import time
from decimal import Decimal

import psycopg2
import psycopg2.extensions

# ---------------------------------------------------------------------------
# Types: SQL type, a pool of literal values (duplicates come from drawing
# with replacement), and whether equal values always print the same (only
# those may be grouping or DISTINCT keys: which of 1.0 and 1.00 a GROUP BY
# keeps is up to the plan).
# ---------------------------------------------------------------------------
TEXTS = ['', ' ', 'a', 'A', 'b', 'B', 'ab', 'a b', 'a-b', 'aa', 'z', 'Z', 'e',
         'E', 'é', 'è', 'ä', 'å', 'ö', 'ß', 'ss', '1', '10', '9', 'x\ty', 'ø']
TYPES = {
    'int2': ('int2', ['-32768', '-1', '0', '1', '2', '7', '32767'], True),
    'int4': ('int4', ['-2147483648', '-5', '0', '1', '2', '3', '100', '2147483647'], True),
    'int8': ('int8', ['-9223372036854775808', '-1', '0', '1', '2', '10000000000',
                      '9223372036854775807'], True),
    'numeric': ('numeric', ['NaN', 'Infinity', '-Infinity', '0', '-0.0', '1', '1.0',
                            '1.00', '2.5', '-2.5', '1e20', '0.000001',
                            '123456789.123456789'], False),
    'float4': ('float4', ['NaN', 'Infinity', '-Infinity', '0', '-0', '1', '1.5', '-1.5',
                          '3.4028235e38', '1e-45'], False),
    'float8': ('float8', ['NaN', 'Infinity', '-Infinity', '0', '-0', '1', '0.1',
                          '1e308', '-1e-300', '2.5'], False),
    'text': ('text', TEXTS, True),
    'varchar': ('varchar(4)', [t for t in TEXTS if len(t) <= 4], True),
    'char': ('char(3)', ['', 'a', 'a ', 'ab', 'abc', 'b', 'B', 'é'], True),
    'bool': ('bool', ['true', 'false'], True),
    'date': ('date', ['infinity', '-infinity', '2000-01-01', '2000-01-02', '1999-12-31',
                      '4713-01-01 BC', '5874897-12-31', '1970-01-01'], True),
    'time': ('time', ['00:00', '12:00', '23:59:59.999999', '24:00', '00:00:00.000001'], True),
    'timestamp': ('timestamp', ['infinity', '-infinity', '2000-01-01 00:00',
                                '2000-01-01 00:00:00.000001', '1999-12-31 23:59:59',
                                '294276-12-31 23:59:59', '4713-01-01 00:00 BC'], True),
    'timestamptz': ('timestamptz', ['infinity', '-infinity', '2000-01-01 00:00+00',
                                    '2000-01-01 01:00+01', '2000-01-01 00:00:01+00',
                                    '1970-01-01 00:00+00', '2000-01-01 00:00-12'], True),
    'interval': ('interval', ['0', '1 day', '24 hours', '1 mon', '30 days', '-1 day',
                              '1 year', '00:00:00.000001', '178000000 years',
                              '-178000000 years'], False),
    'uuid': ('uuid', ['00000000-0000-0000-0000-000000000000',
                      'ffffffff-ffff-ffff-ffff-ffffffffffff',
                      '123e4567-e89b-12d3-a456-426614174000',
                      '123e4567-e89b-12d3-a456-426614174001'], True),
    'bytea': ('bytea', ['\\x', '\\x00', '\\x0000', '\\x01', '\\xff', '\\x00ff', '\\x7f80'], True),
    'inet': ('inet', ['10.0.0.1', '10.0.0.1/8', '::1', '192.168.0.0/16', '0.0.0.0/0'], True),
    'enum': ('o.mood', ['sad', 'ok', 'happy'], True),
    'int4[]': ('int4[]', ['{}', '{1}', '{1,2}', '{NULL}', '{1,NULL}', '{2}', '{0,1}'], True),
    # IS NULL is true for '(,)' and IS NOT NULL false for '(1,)': neither is NULL
    'composite': ('o.pair', ['(1,x)', '(1,)', '(,)', '(,x)', '(2,y)', '(0,"")', '(1,"")'], True),
    'int4range': ('int4range', ['empty', '[1,5)', '(,)', '[1,)', '(,3)', '[2,3)', '[1,2)'], True),
    'text[]': ('text[]', ['{}', '{a}', '{a,b}', '{NULL}', '{B}', '{""}', '{a,NULL}'], True),
    'name': ('name', ['', 'a', 'B', 'ab', 'z', 'é'], True),
    'money': ('money', ['0', '1.50', '-1', '1000000.01', '-92233720368547758.08',
                        '92233720368547758.07'], True),
    'varbit': ('varbit', ['', '0', '1', '01', '10', '0000', '1111'], True),
    'macaddr': ('macaddr', ['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '08:00:2b:01:02:03'], True),
    'timetz': ('timetz', ['00:00+00', '01:00+01', '12:00-05', '23:59:59.999999+14', '00:00-14'],
               True),
    'oid': ('oid', ['0', '1', '4294967295', '12345'], True),
    'domain': ('o.posint', ['1', '2', '3', '100', '2147483647'], True),
    'jsonb': ('jsonb', ['null', '1', '1.0', '"a"', '[]', '{}', '{"a": 1}', 'true', '[1, 2]'], False),
}
TEXTUAL = ('text', 'varchar', 'char', 'text[]')

class Failure(Exception):
    """A wrong answer; .step says at which pulse.page call."""

    def __init__(self, msg, step=None):
        super().__init__(msg)
        self.step = step


# ---------------------------------------------------------------------------
# Case generation
# ---------------------------------------------------------------------------

class Column:
    def __init__(self, name, tkey, collation, notnull):
        self.name, self.tkey, self.collation, self.notnull = name, tkey, collation, notnull

    @property
    def canon(self):
        return TYPES[self.tkey][2] and self.collation != 'o.ci'

    def ddl(self):
        s = '%s %s' % (self.name, TYPES[self.tkey][0])
        if self.collation:
            s += ' COLLATE %s' % (self.collation if '.' in self.collation and
                                  self.collation.startswith('o.') else '"%s"' % self.collation)
        if self.notnull:
            s += ' NOT NULL'
        return s


class Case:
    """Everything needed to rebuild and rerun one case."""

    def __init__(self):
        self.ddl = []            # statements, in order
        self.rows = {}           # table -> list of row tuples (text or None)
        self.insert_order = []   # tables, in insertion order
        self.settings = []       # SET statements
        self.template = ''       # query text with {L} for the literal
        self.lit = ''            # the literal of this case
        self.lit_variant = ''    # another literal, same shape
        self.order = []          # [(name, 'ASC'|'DESC'|'', 'FIRST'|'LAST'|'')]
        self.args = []           # JSON values
        self.args_variant = None
        self.arg_kinds = []      # per arg: a gen_arg kind
        self.page_size = 1
        self.sizes = None        # or a page size per call, cycled
        self.tenant = ''
        self.shape = ''
        self.tiebreak = []       # names that make the order unique

    @property
    def query(self):
        return self.template.replace('{L}', self.lit)

    def size_at(self, call):
        """The page size of call number call (0-based, over the whole case)."""
        return self.page_size if self.sizes is None else self.sizes[call % len(self.sizes)]

    def order_text(self, order=None):
        parts = []
        for name, d, n in (order or self.order):
            s = name
            if d:
                s += ' ' + d
            if n:
                s += ' NULLS ' + n
            parts.append(s)
        return ', '.join(parts)


def gen_value(rng, tkey):
    return rng.choice(TYPES[tkey][1])


def gen_table(rng, case, name, ncols, nrows, collations, id_base, prefix):
    """A table o.<name> (id int PRIMARY KEY, <prefix>1..n); returns columns."""
    cols = []
    for i in range(ncols):
        tkey = rng.choice(list(TYPES))
        coll = None
        if tkey in TEXTUAL and rng.random() < 0.8:
            coll = rng.choice(collations)
        cols.append(Column('%s%d' % (prefix, i + 1), tkey, coll, rng.random() < 0.4))
    extra = ['tref int'] if name == 'u' else []
    layout = rng.random()
    coldefs = ', '.join(['id int NOT NULL'] + extra + [c.ddl() for c in cols])
    if name == 't' and layout < 0.12:
        # partitioned by id: partitions must keep every NOT NULL
        case.ddl.append('CREATE TABLE o.t (%s, PRIMARY KEY (id)) PARTITION BY RANGE (id)' % coldefs)
        case.ddl.append('CREATE TABLE o.t_p1 PARTITION OF o.t FOR VALUES FROM (MINVALUE) TO (%d)'
                        % (id_base + nrows // 2))
        case.ddl.append('CREATE TABLE o.t_p2 PARTITION OF o.t FOR VALUES FROM (%d) TO (MAXVALUE)'
                        % (id_base + nrows // 2))
        targets = ['t']
    elif name == 't' and layout < 0.25:
        # plain inheritance: the child may drop the parent's NOT NULL
        case.ddl.append('CREATE TABLE o.t (%s, PRIMARY KEY (id))' % coldefs)
        case.ddl.append('CREATE TABLE o.t_child () INHERITS (o.t)')
        for c in cols:
            if c.notnull and rng.random() < 0.6:
                case.ddl.append('ALTER TABLE o.t_child ALTER COLUMN %s DROP NOT NULL' % c.name)
                c.child_nullable = True
        targets = ['t', 't_child']
    else:
        case.ddl.append('CREATE TABLE o.%s (%s, PRIMARY KEY (id))' % (name, coldefs))
        targets = [name]
    for tgt in targets:
        case.rows[tgt] = []
        case.insert_order.append(tgt)
    pnull = rng.choice([0.0, 0.1, 0.3, 0.6])
    for r in range(nrows):
        tgt = rng.choice(targets)
        row = [str(id_base + r)]
        if name == 'u':
            row.append(None if rng.random() < 0.15 else str(rng.randint(1, 45)))
        for c in cols:
            nullable = not c.notnull or (tgt == 't_child' and getattr(c, 'child_nullable', False))
            row.append(None if nullable and rng.random() < pnull else gen_value(rng, c.tkey))
        case.rows[tgt].append(tuple(row))
    return cols


def order_keys(rng, sortable, tiebreak):
    """Random leading keys from sortable, then the tiebreak keys."""
    lead = rng.sample(sortable, min(len(sortable), rng.choice([0, 1, 1, 2, 2, 3])))
    tie = list(tiebreak)
    rng.shuffle(tie)
    order = []
    for name in lead + tie:
        order.append((name, rng.choice(['', 'ASC', 'DESC']), rng.choice(['', '', 'FIRST', 'LAST'])))
    return order


def gen_arg(rng, kind):
    """A JSON value for a parameter of kind 'int', 'mod' (a divisor),
    'int[]' or a TYPES key."""
    if kind == 'int':
        return rng.randint(-1, 25)
    if kind == 'mod':
        return rng.randint(1, 5)
    if kind == 'int[]':
        return sorted(rng.sample(range(1, 45), rng.randint(0, 30)))
    if rng.random() < 0.1:
        return None
    v = gen_value(rng, kind)
    # a json/jsonb parameter takes the JSON value itself (README: args)
    return json.loads(v) if kind == 'jsonb' else v


def gen_where(rng, tcols, case):
    """The conjuncts on table t (alias t), with their args."""
    conds = ['t.id <> {L}']
    nargs = rng.choice([0, 0, 1, 1, 2])
    for _ in range(nargs):
        n = len(case.args) + 1
        kind = rng.random()
        cands = [c for c in tcols if c.tkey not in ('enum',)]
        if kind < 0.25 or (kind >= 0.55 and not cands):
            conds.append('t.id > $%d::int' % n)
            akind = 'int'
        elif kind < 0.4:
            conds.append('t.id %% $%d::int <> 0' % n)
            akind = 'mod'
        elif kind < 0.55:
            conds.append('t.id = ANY ($%d::int[])' % n)
            akind = 'int[]'
        else:
            c = rng.choice(cands)
            if kind < 0.8:
                conds.append('t.%s IS DISTINCT FROM $%d::%s' % (c.name, n, TYPES[c.tkey][0]))
            elif c.tkey == 'composite':	# record >= record would infer "record"
                conds.append('(t.%s IS NULL OR t.%s >= $%d::o.pair)' % (c.name, c.name, n))
            else:
                conds.append('(t.%s IS NULL OR t.%s >= $%d)' % (c.name, c.name, n))
            akind = c.tkey
        case.arg_kinds.append(akind)
        case.args.append(gen_arg(rng, akind))
    return ' AND '.join(conds)


def gen_literal(rng, shape_has_key_literal):
    if shape_has_key_literal:
        return rng.choice(['10000000000', '1', '2', '1.5', "'x'", "'y'", 'NULL::int',
                           "DATE '2000-01-01'", '-7'])
    return str(rng.randint(100000, 999999))


def gen_case(rng, collations):
    """A random case: tables, query, order, args, page size, settings."""
    case = Case()
    case.ddl.append("CREATE TYPE o.mood AS ENUM ('sad', 'ok', 'happy')")
    case.ddl.append("CREATE TYPE o.pair AS (a int, b text)")
    case.ddl.append("CREATE DOMAIN o.posint AS int CHECK (VALUE > 0)")
    if any(c == 'o.ci' for c in collations):
        # case-insensitive: 'a' = 'A', so equal keys print differently
        case.ddl.append("CREATE COLLATION o.ci (provider = icu, locale = 'und-u-ks-level2', "
                        "deterministic = false)")
    nt = rng.choice([0, 1, 3, 8, 15, 25, 40])
    tcols = gen_table(rng, case, 't', rng.randint(1, 4), nt, collations, 1, 'c')
    ucols = gen_table(rng, case, 'u', rng.randint(1, 3), rng.choice([0, 2, 6, 15, 30]),
                      collations, 1, 'd')
    where = gen_where(rng, tcols, case)
    shape = rng.choice(SHAPES)
    case.shape = shape.__name__[6:]
    template, sortable, tiebreak, key_literal = shape(rng, tcols, ucols, where, case)
    case.template = template
    case.lit = gen_literal(rng, key_literal)
    while True:
        case.lit_variant = gen_literal(rng, key_literal)
        if case.lit_variant != case.lit:
            break
    case.tiebreak = list(tiebreak)
    case.order = order_keys(rng, [x for x in sortable if x not in tiebreak], tiebreak)
    if case.args:
        case.args_variant = list(case.args)
        i = rng.randrange(len(case.args))
        for _ in range(20):
            case.args_variant[i] = gen_arg(rng, case.arg_kinds[i])
            if json.dumps(case.args_variant[i]) != json.dumps(case.args[i]):
                break
        else:
            case.args_variant = None
    nrows_hint = max(nt, 1)
    case.page_size = rng.choice([1, 1, 2, 2, 3, 4, 5, 7, 10, nrows_hint, nrows_hint + 1, 50])
    if rng.random() < 0.25:
        # a cursor is not bound to the page size: each call may use another
        case.sizes = [rng.randint(1, 8) for _ in range(rng.randint(2, 9))]
    case.tenant = rng.choice(['', '', 'tenant a', 'tenant b'])
    if rng.random() < 0.5:
        # an index on the order, so that the row comparison meets an index
        cols = [k for k in case.order if k[0] in [c.name for c in tcols] + ['id']]
        if cols and case.shape in ('plain', 'projection'):
            case.ddl.append('CREATE INDEX ON o.t (%s)' % ', '.join(
                '%s %s %s' % (n, d or 'ASC', 'NULLS ' + nl if nl else '') for n, d, nl in cols))
    case.settings.append('SET plan_cache_mode = %s' % rng.choice(
        ['auto', 'force_generic_plan', 'force_custom_plan']))
    if rng.random() < 0.4:
        case.settings.append('SET enable_seqscan = off')
        case.settings.append('SET enable_sort = %s' % rng.choice(['on', 'off']))
    return case


# Shapes: each returns (template, sortable column names, tiebreak names,
# whether {L} is an output column's literal).  The template aliases o.t as t
# and uses `where` (conjuncts on t, with {L}) somewhere.

def T(where):
    return '(SELECT * FROM o.t t WHERE %s) t' % where


def names(cols):
    return [c.name for c in cols]


def canon(cols):
    return [c for c in cols if c.canon]


def shape_plain(rng, tc, uc, where, case):
    return 'SELECT * FROM o.t t WHERE %s' % where, names(tc), ['id'], False


def shape_projection(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    where = where.replace('{L}', '-1')
    return ('SELECT t.id, t.%s, {L} AS k FROM o.t t WHERE %s' % (a, where),
            [a, 'k'], ['id'], True)


def shape_join(rng, tc, uc, where, case):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    return ('SELECT u.id AS uid, t.id AS tid, t.%s, u.%s FROM o.u u JOIN %s ON t.id = u.tref'
            % (a, d, T(where)), [a, d, 'tid'], ['uid'], False)


def left_join(tc, uc, where, rng):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    return ('SELECT t.id, t.%s, u.id AS uid, u.%s FROM %s LEFT JOIN o.u u ON u.tref = t.id'
            % (a, d, T(where)), [a, d])


def shape_left_join(rng, tc, uc, where, case):
    q, s = left_join(tc, uc, where, rng)
    return q, s, ['id', 'uid'], False


def shape_right_join(rng, tc, uc, where, case):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    return ('SELECT t.id AS tid, t.%s, u.id AS uid, u.%s FROM %s RIGHT JOIN o.u u ON u.tref = t.id'
            % (a, d, T(where)), [a, d, 'tid'], ['uid'], False)


def shape_full_join(rng, tc, uc, where, case):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    return ('SELECT t.id AS tid, t.%s, u.id AS uid, u.%s FROM %s FULL JOIN o.u u ON u.tref = t.id'
            % (a, d, T(where)), [a, d], ['tid', 'uid'], False)


def shape_cte(rng, tc, uc, where, case):
    q, s = left_join(tc, uc, where, rng)
    mat = rng.choice(['', 'MATERIALIZED ', 'NOT MATERIALIZED '])
    return 'WITH w AS %s(%s) SELECT * FROM w' % (mat, q), s, ['id', 'uid'], False


def shape_subquery(rng, tc, uc, where, case):
    q, s = left_join(tc, uc, where, rng)
    return 'SELECT * FROM (%s) s' % q, s, ['id', 'uid'], False


def shape_view(rng, tc, uc, where, case):
    d = rng.choice(uc).name
    case.ddl.append('CREATE VIEW o.v AS SELECT t.*, u.id AS uid, u.%s FROM o.t t '
                    'LEFT JOIN o.u u ON u.tref = t.id' % d)
    w = where.replace('t.', 'v.')
    return 'SELECT * FROM o.v v WHERE %s' % w, names(tc) + [d], ['id', 'uid'], False


def shape_grouping(rng, tc, uc, where, case):
    cc = canon(tc)
    if len(cc) < 1:
        return shape_plain(rng, tc, uc, where, case)
    a = rng.choice(cc).name
    b = rng.choice(cc).name
    if a == b:
        gs = rng.choice(['ROLLUP (t.%s)' % a, 'CUBE (t.%s)' % a,
                         'GROUPING SETS ((t.%s), ())' % a])
        return ('SELECT t.%s, count(*) AS n, GROUPING(t.%s) AS g FROM %s GROUP BY %s'
                % (a, a, T(where), gs), ['n'], [a, 'g'], False)
    gs = rng.choice(['ROLLUP (t.%s, t.%s)' % (a, b), 'CUBE (t.%s, t.%s)' % (a, b),
                     'GROUPING SETS ((t.%s), (t.%s), ())' % (a, b),
                     't.%s, ROLLUP (t.%s)' % (a, b)])
    return ('SELECT t.%s, t.%s, count(*) AS n, GROUPING(t.%s, t.%s) AS g FROM %s GROUP BY %s'
            % (a, b, a, b, T(where), gs), ['n'], [a, b, 'g'], False)


def shape_group_by(rng, tc, uc, where, case):
    cc = canon(tc)
    if not cc:
        return shape_plain(rng, tc, uc, where, case)
    a = rng.choice(cc).name
    return ('SELECT t.%s, count(*) AS n, max(t.id) AS top FROM %s GROUP BY t.%s'
            % (a, T(where), a), ['n', 'top'], [a], False)


def shape_distinct(rng, tc, uc, where, case):
    cc = canon(tc)
    if not cc:
        return shape_plain(rng, tc, uc, where, case)
    ab = sorted(set(c.name for c in rng.sample(cc, min(2, len(cc)))))
    return ('SELECT DISTINCT %s FROM %s' % (', '.join('t.' + x for x in ab), T(where)),
            [], ab, False)


def shape_distinct_on(rng, tc, uc, where, case):
    a, b = rng.choice(tc).name, rng.choice(tc).name
    cols = 't.%s, t.id' % a if a == b else 't.%s, t.id, t.%s' % (a, b)
    return ('SELECT * FROM (SELECT DISTINCT ON (t.%s) %s FROM %s ORDER BY t.%s, t.id) d'
            % (a, cols, T(where), a), ['id'], [a], False)


def shape_union(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT t.id, t.%s FROM o.t t WHERE %s AND t.id %% 2 = 0 UNION '
            'SELECT t.id, t.%s FROM o.t t WHERE t.id %% 3 = 0' % (a, where, a),
            [a], ['id'], False)


def shape_union_all_null(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT t.id, t.%s FROM o.t t WHERE %s UNION ALL '
            'SELECT u.id + 100000, NULL FROM o.u u' % (a, where), [a], ['id'], False)


def shape_union_all_tag(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT 1 AS src, t.id, t.%s FROM o.t t WHERE %s UNION ALL '
            'SELECT 2, t.id, t.%s FROM o.t t WHERE t.id %% 2 = 1' % (a, where, a),
            [a], ['src', 'id'], False)


def shape_window(rng, tc, uc, where, case):
    a, b = rng.choice(tc).name, rng.choice(tc).name
    return ('SELECT t.id, t.%s, lag(t.%s) OVER (ORDER BY t.id) AS prev, '
            'row_number() OVER (PARTITION BY t.%s ORDER BY t.id) AS rn, '
            'count(*) OVER (PARTITION BY t.%s) AS cnt FROM o.t t WHERE %s'
            % (a, a, b, b, where), [a, 'prev', 'rn', 'cnt'], ['id'], False)


def shape_lateral(rng, tc, uc, where, case):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    join = rng.choice(['LEFT JOIN LATERAL', 'JOIN LATERAL'])
    return ('SELECT t.id, t.%s, l.%s, l.uid FROM %s %s (SELECT u.%s, u.id AS uid FROM o.u u '
            'WHERE u.tref = t.id ORDER BY u.id LIMIT 1) l ON true'
            % (a, d, T(where), join, d), [a, d, 'uid'], ['id'], False)


def shape_rows_from(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT t.id, t.%s, s.n, s.m FROM %s, ROWS FROM (generate_series(1, 2), '
            'generate_series(1, 1)) AS s(n, m)' % (a, T(where)), [a, 'm'], ['id', 'n'], False)


def shape_srf(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT t.id, t.%s, unnest(ARRAY[1, 2]) AS k, unnest(ARRAY[t.id, NULL, 3]) AS e '
            'FROM o.t t WHERE %s' % (a, where), [a, 'e'], ['id', 'k'], False)


def shape_scalar_subquery(rng, tc, uc, where, case):
    a = rng.choice(tc).name
    return ('SELECT t.id, t.%s, (SELECT max(u.id) FROM o.u u WHERE u.tref = t.id) AS mx '
            'FROM o.t t WHERE %s' % (a, where), [a, 'mx'], ['id'], False)


def shape_coalesce(rng, tc, uc, where, case):
    a, d = rng.choice(tc).name, rng.choice(uc).name
    return ('SELECT t.id, t.%s, coalesce(u.%s, u.%s) AS cd, u.id AS uid FROM %s '
            'LEFT JOIN o.u u ON u.tref = t.id' % (a, d, d, T(where)),
            [a, 'cd'], ['id', 'uid'], False)


SHAPES = [shape_plain, shape_plain, shape_projection, shape_join, shape_left_join,
          shape_right_join, shape_full_join, shape_cte, shape_subquery, shape_view,
          shape_grouping, shape_group_by, shape_distinct, shape_distinct_on, shape_union,
          shape_union_all_null, shape_union_all_tag, shape_window, shape_lateral,
          shape_rows_from, shape_srf, shape_scalar_subquery, shape_coalesce]


# ---------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------

def qi(name):
    return '"%s"' % name.replace('"', '""')


def setup(conn, case):
    cur = conn.cursor()
    cur.execute('RESET ALL')
    cur.execute('SET statement_timeout = \'20s\'')
    cur.execute('SET jit = off')    # enable_seqscan = off costs would JIT every page
    cur.execute('DROP SCHEMA IF EXISTS o CASCADE')
    cur.execute('CREATE SCHEMA o')
    for stmt in case.ddl:
        cur.execute(stmt)
    for tgt in case.insert_order:
        rows = case.rows[tgt]
        if rows:
            ph = '(' + ', '.join(['%s'] * len(rows[0])) + ')'
            cur.execute('INSERT INTO o.%s VALUES ' % tgt +
                        ', '.join(cur.mogrify(ph, r).decode() for r in rows))
    cur.execute('ANALYZE ' + ', '.join('o.' + t for t in case.insert_order))
    for s in case.settings:
        cur.execute(s)
    cur.execute('SET pulse.tenant = %s', (case.tenant,))


def expected_rows(conn, case):
    cur = conn.cursor()
    order = ', '.join('q.%s%s%s' % (qi(n), ' ' + d if d else '', ' NULLS ' + nl if nl else '')
                      for n, d, nl in case.order)
    sql = 'SELECT to_jsonb(q.*)::text FROM (%s) q ORDER BY %s' % (case.query, order)
    cur.execute('DEALLOCATE ALL')
    cur.execute('PREPARE oracle_expected AS ' + sql)
    params = ', '.join(['%s'] * len(case.args))
    cur.execute('EXECUTE oracle_expected' + ('(%s)' % params if case.args else ''),
                arg_texts(case))
    return [json.loads(r[0], parse_float=Decimal) for r in cur.fetchall()]


def arg_text(a, kind):
    """The text EXECUTE gets for args element a of kind: what pulse.page
    hands the parameter's input function."""
    if a is None:
        return None
    if kind == 'jsonb':
        return json.dumps(a)	# the JSON value itself
    if kind == 'int[]':
        return '{' + ','.join(str(x) for x in a) + '}'
    return str(a)


def arg_texts(case):
    return [arg_text(a, k) for a, k in zip(case.args, case.arg_kinds)]


def call_page(conn, query, order, cursor, page_size, args):
    cur = conn.cursor()
    cur.execute('SELECT pulse.page(%s, %s, %s, %s, %s::jsonb)::text',
                (query, order, cursor, page_size, json.dumps(args)))
    return json.loads(cur.fetchone()[0], parse_float=Decimal)


def page(conn, case, cursor, step, size):
    try:
        return call_page(conn, case.query, case.order_text(), cursor, size, case.args)
    except psycopg2.Error as e:
        raise Failure('pulse.page raised %s: %s' % (e.pgcode, (e.pgerror or '').strip()), step)


def first_diff(got, want):
    for i in range(max(len(got), len(want))):
        if i >= len(got) or i >= len(want) or got[i] != want[i]:
            return i
    return None


def walk(conn, case, stats):
    """Forward and backward walks; returns the cursors met; raises Failure."""
    want = expected_rows(conn, case)
    calls = [0]

    def call(cursor, step):
        size = case.size_at(calls[0])
        calls[0] += 1
        return page(conn, case, cursor, step, size), size

    got, cursors, pages = [], [], []
    cur = None
    while True:
        step = ('forward', len(pages) + 1)
        p, ps = call(cur, step)
        items = p['items']
        if not pages and p['prev_cursor'] is not None:
            raise Failure('the first page has a prev_cursor', step)
        if p['next_cursor'] is not None and len(items) != ps:
            raise Failure('a page with a next_cursor has %d items, not %d' % (len(items), ps), step)
        pages.append((p, len(got)))
        got.extend(items)
        i = first_diff(got, want)
        if i is not None and i < len(got):
            raise Failure('forward walk: row %d is %s, ORDER BY gives %s'
                          % (i + 1, json.dumps(got[i], default=str),
                             json.dumps(want[i], default=str) if i < len(want) else 'no row'), step)
        for c in (p['next_cursor'], p['prev_cursor']):
            if c:
                cursors.append(c)
        cur = p['next_cursor']
        if cur is None:
            break
        if len(pages) > len(want) + 2:
            raise Failure('forward walk does not end', step)
    if len(got) != len(want):
        raise Failure('forward walk: %d rows, ORDER BY gives %d; first missing: %s'
                      % (len(got), len(want), json.dumps(want[len(got)], default=str)),
                      ('forward', len(pages)))
    stats['walks'] += 1
    stats['pages'] += len(pages)
    stats['rows'] += len(want)

    # one step back from a page in the middle: the rows just before it
    if len(pages) > 1:
        k = 1 + calls[0] % (len(pages) - 1)
        p0, start = pages[k]
        step = ('back from forward', k + 1)
        p, ps = call(p0['prev_cursor'], step)
        before = want[max(0, start - ps):start]
        if p['items'] != before:
            raise Failure('the prev_cursor of forward page %d gives %d rows that are not the '
                          '%d before it' % (k + 1, len(p['items']), len(before)), step)
        if (p['prev_cursor'] is None) != (start - len(before) == 0):
            raise Failure('the page before forward page %d %s a prev_cursor'
                          % (k + 1, 'lacks' if p['prev_cursor'] is None else 'has'), step)

    back = list(pages[-1][0]['items'])
    cur = pages[-1][0]['prev_cursor']
    nback = 0
    while cur is not None:
        nback += 1
        step = ('backward', nback)
        p, ps = call(cur, step)
        items = p['items']
        if p['prev_cursor'] is not None and len(items) != ps:
            raise Failure('a backward page with a prev_cursor has %d items, not %d'
                          % (len(items), ps), step)
        if not items:
            raise Failure('a backward page is empty', step)
        back = items + back
        want_tail = want[len(want) - len(back):] if len(back) <= len(want) else None
        if want_tail is None or back != want_tail:
            raise Failure('backward walk: the %d rows before the last page do not end the '
                          'ORDER BY result' % len(back), step)
        if p['next_cursor'] is None:
            raise Failure('a backward page has no next_cursor', step)
        cursors.append(p['next_cursor'])
        if nback == 1:
            # and forward again from it: the rows just after it
            after_start = len(want) - len(back) + len(items)
            q, qs = call(p['next_cursor'], ('forward from backward', 1))
            if q['items'] != want[after_start:after_start + qs]:
                raise Failure('the next_cursor of backward page 1 gives other rows than the '
                              '%d after it' % qs, ('forward from backward', 1))
        cur = p['prev_cursor']
        if nback > len(want) + 2:
            raise Failure('backward walk does not end', step)
    if back != want:
        raise Failure('backward walk: %d rows, ORDER BY gives %d' % (len(back), len(want)),
                      ('backward', nback))
    stats['backward_pages'] += nback
    return cursors


B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'


class Swap:
    """A pulse.page call with something changed that a cursor must refuse:
    the query, order, args or tenant, or the cursor itself (mutate)."""

    def __init__(self, desc, query, order, args, tenant, mutate=None):
        self.desc, self.query, self.order, self.args, self.tenant = desc, query, order, args, tenant
        self.mutate = mutate or (lambda c: c)

    def __str__(self):
        return self.desc


def swaps(rng, case, foreign):
    """The swaps to try with a cursor of this case."""
    q, o, a, t = case.query, case.order_text(), case.args, case.tenant
    out = [Swap('a literal-only difference: %s' % case.lit_variant,
                case.template.replace('{L}', case.lit_variant), o, a, t)]
    order2 = list(case.order)
    i = rng.randrange(len(order2))
    n, d, nl = order2[i]
    flip = rng.random()
    if flip < 0.3 and len(order2) > 1:
        order2.pop(i)
    elif flip < 0.6:
        first = nl == 'FIRST' if nl else d == 'DESC'
        order2[i] = (n, d, 'LAST' if first else 'FIRST')
    else:
        order2[i] = (n, 'ASC' if d == 'DESC' else 'DESC', nl)
    out.append(Swap('another order: %s' % case.order_text(order2), q, case.order_text(order2), a, t))
    if case.args_variant is not None:
        out.append(Swap('other args: %s' % json.dumps(case.args_variant), q, o,
                        case.args_variant, t))
    out.append(Swap('another tenant', q, o, a, t + ' other'))
    k = rng.randrange(1000)
    out.append(Swap('the cursor truncated', q, o, a, t, lambda c, k=k: c[:k % len(c)]))
    k, ch = rng.randrange(1000), rng.randrange(1, 64)
    out.append(Swap('a character of the cursor changed', q, o, a, t,
                    lambda c, k=k, ch=ch: c[:k % len(c)] + B64[(B64.index(c[k % len(c)]) + ch) % 64]
                    + c[k % len(c) + 1:]))
    tail = ''.join(rng.choice(B64) for _ in range(rng.randint(1, 4)))
    out.append(Swap('the cursor extended', q, o, a, t, lambda c, tail=tail: c + tail))
    if foreign:
        out.append(Swap('the cursor of the previous case', q, o, a, t, lambda c, f=foreign: f))
    return out


def try_swap(conn, case, swap, cursor):
    """None when the swapped call is refused as it must be, else why not."""
    cur = conn.cursor()
    cur.execute('SET pulse.tenant = %s', (swap.tenant,))
    try:
        call_page(conn, swap.query, swap.order, swap.mutate(cursor), case.page_size, swap.args)
        why = 'accepted'
    except psycopg2.Error as e:
        msg = e.diag.message_primary or ''
        why = None if e.pgcode == '22023' and msg.startswith('invalid cursor') else \
            '%s: %s' % (e.pgcode, msg)
    cur.execute('SET pulse.tenant = %s', (case.tenant,))
    return why


def check_swaps(conn, rng, case, cursors, foreign, stats):
    if not cursors:
        return
    c = rng.choice(cursors)
    for swap in swaps(rng, case, foreign):
        why = try_swap(conn, case, swap, c)
        if why is not None:
            raise Failure('a cursor used with %s was not refused with 22023 "invalid cursor": %s'
                          % (swap, why), ('swap', swap))
        stats['swaps'] += 1


def run_case(conn, rng, case, foreign, stats, do_swaps=True):
    """Builds and checks one case; returns a cursor for the next case."""
    setup(conn, case)
    cursors = walk(conn, case, stats)
    if do_swaps:
        check_swaps(conn, rng, case, cursors, foreign, stats)
    return rng.choice(cursors) if cursors else foreign


# ---------------------------------------------------------------------------
# Shrinking and reporting
# ---------------------------------------------------------------------------

def fails(conn, case, check):
    """The Failure the case raises (check: 'walk' or a Swap), or None."""
    try:
        setup(conn, case)
        cursors = walk(conn, case, new_stats())
        if check == 'walk' or not cursors:
            return None
        for c in cursors:
            why = try_swap(conn, case, check, c)
            if why is not None:
                return Failure('a cursor used with %s was not refused with 22023 '
                               '"invalid cursor": %s' % (check, why), ('swap', check))
        return None
    except Failure as f:
        return f if check == 'walk' else None
    except psycopg2.Error as e:
        return Failure('%s: %s' % (e.pgcode, e.pgerror)) if check == 'walk' else None


def shrink(conn, case, failure, deadline):
    """Makes the case smaller while it still fails: page size, rows of each
    table, settings and tenant, leading sort keys; again until nothing
    changes or the deadline passes.  Returns the last failure seen."""
    check = 'walk' if failure.step is None or failure.step[0] != 'swap' else failure.step[1]
    state = {'best': failure}

    def still_fails():
        f = fails(conn, case, check)
        if f is not None:
            state['best'] = f
        return f is not None

    def try_change(apply, undo):
        apply()
        if still_fails():
            return True
        undo()
        return False

    changed = True
    while changed and time.time() < deadline:
        changed = False
        # the same page size for every call, the smallest that still fails
        if case.sizes is not None:
            old_sizes = case.sizes
            if try_change(lambda: setattr(case, 'sizes', None),
                          lambda: setattr(case, 'sizes', old_sizes)):
                changed = True
        for ps in range(1, case.page_size):
            old = case.page_size
            if try_change(lambda: setattr(case, 'page_size', ps),
                          lambda: setattr(case, 'page_size', old)):
                changed = True
                break
        # rows: halves, quarters, ... single rows of each table
        for tgt in case.insert_order:
            rows = case.rows[tgt]
            chunk = max(1, len(rows) // 2)
            while chunk >= 1 and time.time() < deadline:
                i, removed = 0, False
                while i < len(rows) and time.time() < deadline:
                    saved = rows[i:i + chunk]
                    if try_change(lambda: rows.__delitem__(slice(i, i + chunk)),
                                  lambda: rows.__setitem__(slice(i, i), saved)):
                        removed = changed = True
                    else:
                        i += chunk
                if not removed:
                    chunk //= 2
        # settings and tenant
        for setting in list(case.settings):
            pos = case.settings.index(setting)
            if try_change(lambda: case.settings.remove(setting),
                          lambda: case.settings.insert(pos, setting)):
                changed = True
        if case.tenant:
            old = case.tenant
            if try_change(lambda: setattr(case, 'tenant', ''),
                          lambda: setattr(case, 'tenant', old)):
                changed = True
        # leading keys; the tiebreakers keep the order unique
        i = 0
        while i < len(case.order) and time.time() < deadline:
            saved = case.order[i]
            if saved[0] not in case.tiebreak and \
                    try_change(lambda: case.order.pop(i), lambda: case.order.insert(i, saved)):
                changed = True
            else:
                i += 1
    return state['best']


WALK_DO = """DO $do$
DECLARE
    c      oracle_case;
    p      jsonb;
    q      jsonb;
    prevs  text[] := '{}';
    cur    text;
    n      int := 0;
    k      int;
    calls  int := 0;
BEGIN
    SELECT * INTO c FROM oracle_case;
    LOOP
        n := n + 1;
        p := pulse.page(c.q, c.o, cur, coalesce(c.sizes[1 + calls % cardinality(c.sizes)], c.ps), c.args);
        calls := calls + 1;
        RAISE NOTICE 'forward page %: %', n, p->'items';
        prevs := prevs || (p->>'prev_cursor');
        cur := p->>'next_cursor';
        EXIT WHEN cur IS NULL OR n > 200;
    END LOOP;
    IF n > 1 THEN
        k := 1 + calls % (n - 1);
        q := pulse.page(c.q, c.o, prevs[k + 1], coalesce(c.sizes[1 + calls % cardinality(c.sizes)], c.ps), c.args);
        calls := calls + 1;
        RAISE NOTICE 'back from forward page %: %', k + 1, q->'items';
    END IF;
    cur := p->>'prev_cursor';
    n := 0;
    WHILE cur IS NOT NULL AND n < 200 LOOP
        n := n + 1;
        p := pulse.page(c.q, c.o, cur, coalesce(c.sizes[1 + calls % cardinality(c.sizes)], c.ps), c.args);
        calls := calls + 1;
        RAISE NOTICE 'backward page %: %', n, p->'items';
        IF n = 1 THEN
            q := pulse.page(c.q, c.o, p->>'next_cursor', coalesce(c.sizes[1 + calls % cardinality(c.sizes)], c.ps), c.args);
            calls := calls + 1;
            RAISE NOTICE 'forward from backward page 1: %', q->'items';
        END IF;
        cur := p->>'prev_cursor';
    END LOOP;
END
$do$;"""


def sql_json(v):
    """JSON text for inside a single-quoted SQL literal."""
    return json.dumps(v).replace("'", "''")


def dollar(s):
    return '$oracle$%s$oracle$' % s


def case_script(case, failure, seed, number):
    """The minimal case as a psql script."""
    out = ['-- pulse.page oracle: seed %s, case %s, shape %s' % (seed, number, case.shape),
           '-- failure: %s' % failure,
           '-- reproduce the whole case: PAGE_ORACLE_SEED=%s PAGE_ORACLE_CASE=%s '
           'bash extension/test/page_oracle.sh' % (seed, number),
           'DROP SCHEMA IF EXISTS o CASCADE;', 'CREATE SCHEMA o;']
    out += [s + ';' for s in case.ddl]
    for tgt in case.insert_order:
        for r in case.rows[tgt]:
            out.append('INSERT INTO o.%s VALUES (%s);' % (tgt, ', '.join(
                'NULL' if v is None else "'%s'" % v.replace("'", "''") for v in r)))
    out.append('ANALYZE %s;' % ', '.join('o.' + t for t in case.insert_order))
    out += [s + ';' for s in case.settings]
    out.append("SET pulse.tenant = '%s';" % case.tenant.replace("'", "''"))
    out.append('CREATE TEMP TABLE oracle_case AS SELECT %s::text AS q, %s::text AS o, %d AS ps, '
               "'%s'::jsonb AS args, %s::int[] AS sizes;"
               % (dollar(case.query), dollar(case.order_text()), case.page_size,
                  sql_json(case.args),
                  "'{%s}'" % ','.join(map(str, case.sizes)) if case.sizes else 'NULL'))
    step = failure.step or ('forward', 1)
    if step[0] != 'swap':
        out.append('-- every page of the walk, forward then backward from the last page; '
                   'the failure is at %s page %s' % step)
        out.append(WALK_DO)
    if step[0] == 'swap':
        sw = step[1]
        out.append('-- a cursor of the walk (here page 1\'s next_cursor) with %s:' % sw)
        out.append("SELECT pulse.page(q, o, NULL, ps, args)->>'next_cursor' AS c FROM oracle_case \\gset")
        out.append("SET pulse.tenant = '%s';" % sw.tenant.replace("'", "''"))
        out.append("SELECT pulse.page(%s, %s, :'c', %d, '%s'::jsonb);%s"
                   % (dollar(sw.query), dollar(sw.order), case.page_size, sql_json(sw.args),
                      '' if sw.desc.startswith(('a literal', 'another', 'other')) else
                      '  -- with the cursor changed as said above'))
    order = ', '.join('q.%s%s%s' % (qi(n), ' ' + d if d else '', ' NULLS ' + nl if nl else '')
                      for n, d, nl in case.order)
    out.append('-- the oracle: the same query ordered by the database')
    out.append('PREPARE oracle_expected AS SELECT to_jsonb(q.*) FROM (%s) q ORDER BY %s;'
               % (case.query, order))
    out.append('EXECUTE oracle_expected%s;' % (
        '(%s)' % ', '.join('NULL' if a is None else "'%s'" % a.replace("'", "''")
                           for a in arg_texts(case)) if case.args else ''))
    return '\n'.join(out) + '\n'


def new_stats():
    return {'cases': 0, 'walks': 0, 'pages': 0, 'backward_pages': 0, 'rows': 0, 'swaps': 0,
            'shapes': {}}


def connect(args):
    conn = psycopg2.connect(host=args.host, port=args.port, user=args.user, dbname=args.dbname)
    conn.autocommit = True
    return conn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', required=True)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--user', default='postgres')
    ap.add_argument('--dbname', default='pulse')
    ap.add_argument('--seconds', type=float, default=15)
    ap.add_argument('--seed', default=None)
    ap.add_argument('--case', type=int, default=None)
    ap.add_argument('--out', default='build')
    ap.add_argument('--checks', default='walk,swap',
                    help='walk: forward and backward walks; swap: refused cursors')
    args = ap.parse_args()

    seed = args.seed or str(random.SystemRandom().randrange(10 ** 9))
    print('# page oracle: seed %s, %s; reproduce with PAGE_ORACLE_SEED=%s'
          % (seed, 'case %d' % args.case if args.case is not None else
             '%g s of cases' % args.seconds, seed))
    sys.stdout.flush()
    conn = connect(args)
    cur = conn.cursor()
    cur.execute("SELECT collname FROM pg_collation WHERE collname IN "
                "('C', 'POSIX', 'C.utf8', 'C.UTF-8', 'en-US-x-icu', 'und-x-icu', "
                "'sv-SE-x-icu', 'de-DE-x-icu', 'en_US.utf8') ORDER BY 1")
    collations = [r[0] for r in cur.fetchall()]
    if 'und-x-icu' in collations:
        collations.append('o.ci')	# created by each case: nondeterministic
    print('# collations: %s (and the default)' % ', '.join(collations))

    stats = new_stats()
    start = time.time()
    n = args.case if args.case is not None else 0
    foreign = None
    failure = case = None
    while True:
        rng = random.Random('%s:%d' % (seed, n))
        case = gen_case(rng, collations)
        try:
            foreign = run_case(conn, rng, case, foreign, stats,
                               'swap' in args.checks.split(','))
        except Failure as f:
            failure = f
        except psycopg2.Error as e:
            failure = Failure('unexpected error %s: %s' % (e.pgcode, (e.pgerror or '').strip()))
        stats['cases'] += 1
        stats['shapes'][case.shape] = stats['shapes'].get(case.shape, 0) + 1
        if failure or args.case is not None or time.time() - start >= args.seconds:
            break
        n += 1

    elapsed = time.time() - start
    summary = ('%d cases in %.1f s: %d forward walks (%d pages, %d rows) and backward walks '
               '(%d pages) matched ORDER BY; %d foreign, tampered or truncated cursors refused'
               % (stats['cases'], elapsed, stats['walks'], stats['pages'], stats['rows'],
                  stats['backward_pages'], stats['swaps']))
    print('# shapes: ' + ', '.join('%s %d' % kv for kv in sorted(stats['shapes'].items())))
    if failure is None:
        print('ok 1 - ' + summary)
        print('1 passed, 0 failed')
        return 0

    print('# FAILED: seed %s, case %d (shape %s): %s' % (seed, n, case.shape, failure))
    print('# step: %s' % (' '.join(str(x) for x in failure.step) if failure.step else '-'))
    print('# shrinking ...')
    sys.stdout.flush()
    try:
        conn.close()
    except psycopg2.Error:
        pass
    conn = connect(args)
    small = shrink(conn, case, failure, time.time() + 120)
    script = case_script(case, small, seed, n)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'page-oracle-%s-%d.sql' % (seed, n))
    with open(path, 'w') as fh:
        fh.write(script)
    print('# minimal case (%s):' % path)
    for line in script.splitlines():
        print('#   ' + line)
    print('not ok 1 - seed %s case %d: %s' % (seed, n, small))
    print('# before the failure: ' + summary)
    print('0 passed, 1 failed')
    return 1


if __name__ == '__main__':
    sys.exit(main())
