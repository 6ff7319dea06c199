#!/usr/bin/python3
"""Fingerprint and normalize oracle (run by fingerprint_oracle.sh).

Against a real server with pulse installed (libpq environment variables),
over the statements of fingerprint_corpus.sql and seeded random mutations of
them, checks:

  invariants, for every statement q (corpus or mutated):
    parse      pulse.normalize(q) parses (pulse.fingerprint of it succeeds)
               and normalize did not fall back to keeping the literals
    same       pulse.fingerprint(pulse.normalize(q)) = pulse.fingerprint(q)
    fixpoint   pulse.normalize(pulse.normalize(q)) = pulse.normalize(q)
  mutations, each against the statement it was made from:
    literal    a literal's value changed           -> same fingerprint
    space      whitespace changed                  -> same fingerprint
    comment    a comment added                     -> same fingerprint
    case       keywords' and identifiers' case     -> same fingerprint
    inlist     IN (...) / ARRAY[...] of constants one longer or shorter
                                                   -> same fingerprint
    ident      an identifier renamed               -> different fingerprint
    operator   a comparison or arithmetic operator replaced
                                                   -> different fingerprint

A mutation that does not parse is dropped.  Which literal tokens are
constants of the raw tree (and so must not count) and which are names or
option values the grammar keeps as strings (and count) is decided here from
the tokens around them (literal_counts), independently of pulse.

Seeded: FUZZ_SEED (default: from the clock) is printed first; the first pass
gives every corpus statement one mutation of every kind, then random
mutations run until FUZZ_SECONDS (default 10) have passed.  On the first
failure the case is shrunk (tokens deleted while it still fails), printed and
written to ORACLE_OUT; the exit status is 1.
"""
import os
import random
import re
import sys
import time

import psycopg2

KEYWORDS = set()
with open('/usr/include/postgresql/15/server/parser/kwlist.h') as f:
    for m in re.finditer(r'PG_KEYWORD\("(\w+)"', f.read()):
        KEYWORDS.add(m.group(1).upper())

# ---------------------------------------------------------------------------
# A tokenizer close enough to PostgreSQL's scanner for the corpus
# ---------------------------------------------------------------------------
OP_CHARS = set('+-*/<>=~!@#%^&|`?')
TOKEN_RES = [
    ('ws', re.compile(r'\s+')),
    ('comment', re.compile(r'--[^\n]*')),
    ('str', re.compile(r"(?:[eE]'(?:[^'\\]|\\.|'')*'|(?:[uU]&|[bBxXnN])?'(?:[^']|'')*')")),
    ('qident', re.compile(r'(?:[uU]&)?"(?:[^"]|"")*"')),
    ('param', re.compile(r'\$\d+')),
    ('num', re.compile(r'(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?')),
    ('word', re.compile(r'[A-Za-z_\x80-\uffff][A-Za-z_0-9$\x80-\uffff]*')),
    ('typecast', re.compile(r'::')),
    ('punct', re.compile(r'[()\[\],;.:]')),
]


class Tok:
    __slots__ = ('kind', 'text')

    def __init__(self, kind, text):
        self.kind = kind
        self.text = text

    def up(self):
        return self.text.upper() if self.kind == 'word' else None


def tokenize(s):
    toks = []
    i = 0
    while i < len(s):
        if s.startswith('/*', i):
            depth, j = 0, i
            while j < len(s):
                if s.startswith('/*', j):
                    depth += 1
                    j += 2
                elif s.startswith('*/', j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        break
                else:
                    j += 1
            toks.append(Tok('comment', s[i:j]))
            i = j
            continue
        m = re.compile(r'\$([A-Za-z_][A-Za-z_0-9]*)?\$').match(s, i)
        if m and not re.match(r'\$\d', s[i:i + 2]):
            end = s.find(m.group(0), m.end())
            if end < 0:
                raise ValueError('unterminated dollar quote')
            toks.append(Tok('dollar', s[i:end + len(m.group(0))]))
            i = end + len(m.group(0))
            continue
        for kind, rx in TOKEN_RES:
            m = rx.match(s, i)
            if m:
                toks.append(Tok(kind, m.group(0)))
                i = m.end()
                break
        else:
            if s[i] in OP_CHARS:
                j = i
                while j < len(s) and s[j] in OP_CHARS and not s.startswith('--', j) \
                        and not s.startswith('/*', j):
                    j += 1
                op = s[i:j]
                # PostgreSQL's rule: a trailing + or - is not part of an
                # operator made of + - * / < > = only
                while len(op) > 1 and op[-1] in '+-' and not set(op) & set('~!@#%^&|`?'):
                    op = op[:-1]
                toks.append(Tok('op', op))
                i += len(op)
            else:
                raise ValueError('cannot tokenize at %r' % s[i:i + 10])
    return toks


def join(toks):
    return ''.join(t.text for t in toks)


def sig_index(toks):
    return [i for i, t in enumerate(toks) if t.kind not in ('ws', 'comment')]

# ---------------------------------------------------------------------------
# Which literal tokens are constants of the raw tree
# ---------------------------------------------------------------------------
TYPE_WORDS = {'VARCHAR', 'CHAR', 'CHARACTER', 'VARYING', 'NUMERIC', 'DECIMAL',
              'DEC', 'BIT', 'VARBIT', 'INTERVAL', 'TIMESTAMP', 'TIME', 'FLOAT',
              'TIMESTAMPTZ', 'TIMETZ', 'CURRENT_TIMESTAMP', 'CURRENT_TIME',
              'LOCALTIME', 'LOCALTIMESTAMP', 'INT', 'INTEGER', 'BIGINT',
              'SMALLINT', 'TEXT'}
OPTION_OPENERS = {'WITH', 'OPTIONS', 'SET', 'RESET', 'EXPLAIN', 'VACUUM',
                  'ANALYZE', 'IDENTITY'}
NAME_STMTS = [('COMMENT',), ('SECURITY',), ('DO',), ('LOAD',), ('NOTIFY',),
              ('FETCH',), ('MOVE',), ('LISTEN',), ('CREATE', 'ROLE'),
              ('CREATE', 'USER'), ('CREATE', 'DATABASE'), ('CREATE', 'EXTENSION'),
              ('CREATE', 'SEQUENCE'), ('CREATE', 'TYPE'), ('CREATE', 'FOREIGN'),
              ('ALTER', 'ROLE'), ('ALTER', 'SEQUENCE'), ('ALTER', 'TYPE'),
              ('PREPARE', 'TRANSACTION'), ('COMMIT', 'PREPARED'),
              ('ROLLBACK', 'PREPARED')]
STRING_NAME_AFTER = {'AS', 'IS', 'PASSWORD', 'UNTIL', 'ENCODING', 'LOCALE',
                     'VERSION', 'LANGUAGE', 'PROGRAM', 'UESCAPE', 'AFTER',
                     'BEFORE', 'VALUE'}
NUMBER_NAME_AFTER = {'STATISTICS', 'MODULUS', 'REMAINDER', 'START', 'INCREMENT',
                     'CACHE', 'MINVALUE', 'MAXVALUE', 'RESTART', 'FORWARD',
                     'BACKWARD', 'ABSOLUTE', 'RELATIVE'}


def is_literal_tok(t):
    return t.kind in ('str', 'num', 'dollar') or \
        (t.kind == 'word' and t.up() in ('TRUE', 'FALSE', 'NULL'))


def literal_counts(toks, k):
    """Is toks[k], a literal token, a constant of the raw tree?"""
    sig = sig_index(toks)
    pos = sig.index(k)
    words = [toks[i].up() for i in sig]
    first = tuple(w for w in words[:2])
    for pat in NAME_STMTS:
        if first[:len(pat)] == pat:
            return False
    stmt = words[0]
    prev = words[pos - 1] if pos > 0 else None
    prev2 = words[pos - 2] if pos > 1 else None
    t = toks[k]
    # enclosing brackets: option lists, type modifiers, trigger arguments
    depth = 0
    for p in range(pos - 1, -1, -1):
        tt = toks[sig[p]]
        if tt.text in (')', ']'):
            depth += 1
        elif tt.text in ('(', '['):
            if depth > 0:
                depth -= 1
                continue
            before = words[p - 1] if p > 0 else None
            if tt.text == '(' and before in OPTION_OPENERS:
                return False
            if before in TYPE_WORDS:
                return False
            if p > 2 and words[p - 2] in ('FUNCTION', 'PROCEDURE') and words[p - 3] == 'EXECUTE':
                return False
            if before == 'EXTRACT':
                return False
    if t.kind in ('str', 'dollar'):
        if prev in STRING_NAME_AFTER:
            return False
        if stmt == 'COPY' and prev in ('FROM', 'TO'):
            return False
    if t.kind == 'num':
        if prev in NUMBER_NAME_AFTER or (prev == 'LIMIT' and prev2 == 'CONNECTION'):
            return False
        if prev in ('WITH', 'BY') and prev2 in ('START', 'RESTART', 'INCREMENT'):
            return False
        if prev in ('COST', 'ROWS') and 'FUNCTION' in words:
            return False
        if prev == '-' and prev2 in NUMBER_NAME_AFTER:
            return False
    if t.kind == 'word':
        if prev in ('IS', 'SET', 'NOT') or (prev == 'NOT' and prev2 == 'IS'):
            return False
    return True

# ---------------------------------------------------------------------------
# Mutations: each returns a new token list, or None when it does not apply
# ---------------------------------------------------------------------------


def rand_literal(rng, t):
    if t.kind == 'num':
        return Tok('num', rng.choice([str(rng.randint(0, 99999)),
                                      '%d.%02d' % (rng.randint(0, 999), rng.randint(0, 99)),
                                      '%de%d' % (rng.randint(1, 9), rng.randint(0, 9))]))
    if t.kind == 'dollar':
        tag = re.match(r'\$[^$]*\$', t.text).group(0)
        return Tok('dollar', tag + rand_word(rng) + tag)
    if t.kind == 'str':
        prefix = t.text[:t.text.index("'")]
        if prefix.upper() == 'B':
            body = ''.join(rng.choice('01') for _ in range(rng.randint(0, 8)))
        elif prefix.upper() == 'X':
            body = ''.join(rng.choice('0123456789abcdef') for _ in range(2 * rng.randint(0, 4)))
        else:
            body = rand_word(rng)
        return Tok('str', prefix + "'" + body + "'")
    u = t.up()
    if u in ('TRUE', 'FALSE'):
        return Tok('word', 'false' if u == 'TRUE' else 'true')
    return Tok('num', str(rng.randint(0, 999)))        # NULL


def rand_word(rng):
    return ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz0123456789 _-')
                   for _ in range(rng.randint(0, 10)))


def mut_literal(rng, toks):
    cands = [i for i, t in enumerate(toks) if is_literal_tok(t) and literal_counts(toks, i)]
    if not cands:
        return None
    i = rng.choice(cands)
    if toks[i].up() == 'NULL':
        sig = sig_index(toks)
        p = sig.index(i)
        if p == 0 or toks[sig[p - 1]].text.upper() not in ('=', ',', '(', 'DEFAULT', 'SELECT', 'THEN', 'ELSE'):
            return None
    new = list(toks)
    new[i] = rand_literal(rng, toks[i])
    return new


def rand_space(rng):
    return ''.join(rng.choice([' ', '  ', '\t', '\n', '\n  ']) for _ in range(rng.randint(1, 3)))


def mut_space(rng, toks):
    new = []
    for t in toks:
        if t.kind == 'ws':
            new.append(Tok('ws', rand_space(rng)))
        else:
            new.append(t)
    sig = sig_index(new)
    if len(sig) > 1:
        i = rng.choice(sig[1:])
        new.insert(i, Tok('ws', rand_space(rng)))
    return new


def mut_comment(rng, toks):
    sig = sig_index(toks)
    i = rng.choice(sig + [len(toks)])
    c = rng.choice(['/* %s */' % rand_word(rng), '/* a /* nested */ b */',
                    '-- %s\n' % rand_word(rng)])
    return toks[:i] + [Tok('ws', ' '), Tok('comment', c), Tok('ws', ' ')] + toks[i:]


def mut_case(rng, toks):
    new = []
    changed = False
    for t in toks:
        if t.kind == 'word' or (t.kind == 'str' and t.text[0] != "'"):
            q = t.text.find("'") if t.kind == 'str' else len(t.text)
            head = ''.join(c.upper() if rng.random() < 0.5 else c.lower() for c in t.text[:q])
            changed |= head != t.text[:q]
            new.append(Tok(t.kind, head + t.text[q:]))
        else:
            new.append(t)
    return new if changed else None


CONST_WORDS = TYPE_WORDS | {'TRUE', 'FALSE', 'NULL', 'DATE', 'BOOLEAN'}


def list_elements(toks, open_i, close_ch):
    """Element spans [(start, end)) of the bracket list opened at open_i."""
    elems, depth, start = [], 0, open_i + 1
    for j in range(open_i + 1, len(toks)):
        x = toks[j].text
        if x in ('(', '['):
            depth += 1
        elif x in (')', ']') and depth > 0:
            depth -= 1
        elif x == close_ch or (x == ',' and depth == 0):
            elems.append((start, j))
            start = j + 1
            if x == close_ch:
                return elems, j
    return None, None


def is_constant_span(toks, a, b):
    seen = False
    for t in toks[a:b]:
        if t.kind in ('ws', 'comment'):
            continue
        seen = True
        if t.kind in ('str', 'num', 'param', 'typecast'):
            continue
        if t.text in ('(', ')', ',', '-', '[', ']'):
            continue
        if t.kind == 'word' and t.up() in CONST_WORDS:
            continue
        return False
    return seen


def mut_inlist(rng, toks):
    sig = sig_index(toks)
    cands = []
    for p, i in enumerate(sig[:-1]):
        u = toks[i].up()
        nxt = toks[sig[p + 1]].text
        if u == 'IN' and nxt == '(' and not (p > 0 and toks[sig[p - 1]].up() == 'VALUES'):
            cands.append((sig[p + 1], ')'))
        if u == 'ARRAY' and nxt == '[':
            cands.append((sig[p + 1], ']'))
    rng.shuffle(cands)
    for open_i, close in cands:
        elems, close_i = list_elements(toks, open_i, close)
        if not elems or not all(is_constant_span(toks, a, b) for a, b in elems):
            continue
        a, b = rng.choice(elems)
        if len(elems) > 1 and rng.random() < 0.5:
            # drop one element with its separator
            if (a, b) == elems[-1]:
                return toks[:elems[-2][1]] + toks[b:]
            return toks[:a] + toks[b + 1:]
        return toks[:b] + [Tok('punct', ','), Tok('ws', ' ')] + toks[a:b] + toks[b:]
    return None


def mut_ident(rng, toks):
    cands = [i for i, t in enumerate(toks) if t.kind == 'word' and t.up() not in KEYWORDS]
    if not cands:
        return None
    i = rng.choice(cands)
    new = list(toks)
    new[i] = Tok('word', toks[i].text + '_m')
    return new


CMP_OPS = ['<', '>', '<=', '>=', '<>']
ARITH_OPS = ['+', '*', '/', '%', '||']


def mut_operator(rng, toks):
    sig = sig_index(toks)
    cands = []
    for p in range(1, len(sig) - 1):
        t = toks[sig[p]]
        if t.kind != 'op' or t.text not in CMP_OPS + ARITH_OPS + ['!=']:
            continue
        prev = toks[sig[p - 1]]
        if not (prev.kind in ('num', 'str', 'param', 'qident', 'dollar') or prev.text in (')', ']')
                or (prev.kind == 'word' and prev.up() not in KEYWORDS)):
            continue
        cands.append(sig[p])
    if not cands:
        return None
    i = rng.choice(cands)
    old = toks[i].text
    group = ARITH_OPS if old in ARITH_OPS else CMP_OPS
    choices = [o for o in group if o != old and not (old == '!=' and o == '<>')]
    new = list(toks)
    new[i] = Tok('op', rng.choice(choices))
    return new


MUTATIONS = [('literal', mut_literal, True), ('space', mut_space, True),
             ('comment', mut_comment, True), ('case', mut_case, True),
             ('inlist', mut_inlist, True), ('ident', mut_ident, False),
             ('operator', mut_operator, False)]

# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class Server:
    def __init__(self):
        self.conn = psycopg2.connect('')
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.cur.execute('SET client_min_messages = debug1')
        self.calls = 0

    def call(self, fn, q):
        """(value, None) or (None, sqlstate); a normalize that fell back
        to keeping literals is reported as sqlstate 'FALLBACK'."""
        self.calls += 1
        del self.conn.notices[:]
        try:
            self.cur.execute('SELECT pulse.%s(%%s)' % fn, (q,))
            v = self.cur.fetchone()[0]
        except psycopg2.Error as e:
            return None, e.pgcode or 'ERROR'
        if any('pulse.normalize' in n for n in self.conn.notices):
            return None, 'FALLBACK'
        return v, None


def invariant_failure(srv, q):
    """None if q satisfies the invariants (or does not parse), else why."""
    f, err = srv.call('fingerprint', q)
    if err:
        return None if err == '42601' else 'fingerprint raised %s' % err
    n, err = srv.call('normalize', q)
    if err:
        return 'normalize raised %s' % err
    fn, err = srv.call('fingerprint', n)
    if err:
        return 'normalize output does not parse (%s): %s' % (err, n)
    if fn != f:
        return 'fingerprint(normalize(q)) %s <> fingerprint(q) %s; normalize(q) = %s' % (fn, f, n)
    nn, err = srv.call('normalize', n)
    if err or nn != n:
        return 'normalize is not a fixpoint: normalize(normalize(q)) = %s; normalize(q) = %s' % (nn, n)
    return None


def pair_failure(srv, a, b, want_same):
    """None if fingerprints of a and b relate as expected (or one does not
    parse), else why."""
    fa, ea = srv.call('fingerprint', a)
    fb, eb = srv.call('fingerprint', b)
    if ea or eb:
        return None
    if (fa == fb) != want_same:
        return 'fingerprints %s and %s are %s' % (fa, fb, 'different' if want_same else 'equal')
    return None

# ---------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------


def shrink_single(srv, toks, fails):
    sig_only = [t for t in toks if t.kind not in ('ws', 'comment')] if fails(join_spaced(
        [t for t in toks if t.kind not in ('ws', 'comment')])) else None
    cur = sig_only or toks
    text = join_spaced(cur) if sig_only else join(cur)
    budget = 3000
    progress = True
    while progress and budget > 0:
        progress = False
        for size in (8, 4, 2, 1):
            i = 0
            while i < len(cur) and budget > 0:
                cand = cur[:i] + cur[i + size:]
                budget -= 1
                ctext = join_spaced(cand) if sig_only else join(cand)
                if cand and fails(ctext):
                    cur, text, progress = cand, ctext, True
                else:
                    i += 1
    return text


def join_spaced(toks):
    return ' '.join(t.text for t in toks)


def shrink_pair(srv, a, b, fails):
    """Delete tokens common to both (outside the part that differs)."""
    budget = 3000
    progress = True
    while progress and budget > 0:
        progress = False
        p = 0
        while p < min(len(a), len(b)) and a[p].text == b[p].text:
            p += 1
        s = 0
        while s < min(len(a), len(b)) - p and a[-1 - s].text == b[-1 - s].text:
            s += 1
        for idx in list(range(p)) + [-1 - k for k in range(s)]:
            if budget <= 0:
                break
            budget -= 1
            if idx >= 0:
                na, nb = a[:idx] + a[idx + 1:], b[:idx] + b[idx + 1:]
            else:
                na = a[:len(a) + idx] + a[len(a) + idx + 1:]
                nb = b[:len(b) + idx] + b[len(b) + idx + 1:]
            if na and nb and fails(join(na), join(nb)):
                a, b, progress = na, nb, True
                break
    return join(a), join(b)

# ---------------------------------------------------------------------------


def main():
    seed = int(os.environ.get('FUZZ_SEED') or int(time.time() * 1000) % 1000000007)
    seconds = float(os.environ.get('FUZZ_SECONDS') or 10)
    out_path = os.environ.get('ORACLE_OUT', 'fingerprint_oracle_failure.txt')
    corpus_path = os.environ.get('ORACLE_CORPUS') or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'fingerprint_corpus.sql')
    print('# seed: %d (FUZZ_SEED=%d reproduces), %g s of random mutations' % (seed, seed, seconds))
    sys.stdout.flush()
    rng = random.Random(seed)
    srv = Server()
    corpus = [line.strip() for line in open(corpus_path, encoding='utf-8')
              if line.strip() and not line.startswith('--')]
    ntap = [0]
    counts = {name: 0 for name, _, _ in MUTATIONS}

    def tap(ok, desc):
        ntap[0] += 1
        print('%s %d - %s' % ('ok' if ok else 'not ok', ntap[0], desc))
        sys.stdout.flush()
        return ok

    def report(kind, detail, case_lines):
        msg = ['fingerprint oracle failure (seed %d): %s' % (seed, kind), detail] + case_lines
        print('# ' + '\n# '.join('\n'.join(msg).split('\n')))
        with open(out_path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(msg) + '\n')
        print('# minimal case written to %s' % out_path)

    # the corpus itself
    bad = []
    for q in corpus:
        f, err = srv.call('fingerprint', q)
        if err:
            bad.append('%s: %s' % (err, q))
    if not tap(not bad, 'corpus: all %d statements fingerprint' % len(corpus)):
        print('# ' + '\n# '.join(bad[:20]))
        return 1
    fps = {}
    for q in corpus:
        fps.setdefault(srv.call('fingerprint', q)[0], []).append(q)
    dups = [v for v in fps.values() if len(v) > 1]
    print('# corpus: %d distinct fingerprints (%d groups of synonyms)' % (len(fps), len(dups)))

    def check_invariants(q, origin):
        why = invariant_failure(srv, q)
        if why:
            small = shrink_single(srv, tokenize(q), lambda s: invariant_failure(srv, s) is not None)
            report('invariant', why, ['statement: ' + q, 'from: ' + origin,
                                      'minimal: ' + small,
                                      'minimal fails: ' + str(invariant_failure(srv, small))])
            return False
        return True

    for q in corpus:
        if not check_invariants(q, 'corpus'):
            tap(False, 'corpus: normalize parses, is a fixpoint, keeps the fingerprint')
            return 1
    tap(True, 'corpus: normalize parses, is a fixpoint, keeps the fingerprint')

    def try_mutation(q, name, fn, want_same):
        toks = tokenize(q)
        new = fn(rng, toks)
        if new is None:
            return True
        b = join(new)
        if srv.call('fingerprint', b)[1]:
            return True         # the mutation does not parse
        counts[name] += 1
        why = pair_failure(srv, q, b, want_same)
        if why:
            sa, sb = shrink_pair(srv, toks, new,
                                 lambda x, y: pair_failure(srv, x, y, want_same) is not None)
            report(name, why, ['statement: ' + q, 'mutated:   ' + b,
                               'minimal:   ' + sa, 'mutated:   ' + sb,
                               'minimal fails: ' + str(pair_failure(srv, sa, sb, want_same))])
            return False
        return check_invariants(b, '%s mutation of: %s' % (name, q))

    start = time.time()
    iterations = 0
    ok = True
    for q in corpus:
        for name, fn, want_same in MUTATIONS:
            iterations += 1
            if not try_mutation(q, name, fn, want_same):
                ok = False
                break
        if not ok:
            break
    while ok and time.time() - start < seconds:
        q = rng.choice(corpus)
        name, fn, want_same = rng.choice(MUTATIONS)
        iterations += 1
        if not try_mutation(q, name, fn, want_same):
            ok = False
    tap(ok, 'mutations: %d tried in %.1f s (%s), %d server calls' % (
        iterations, time.time() - start,
        ', '.join('%s %d' % (k, v) for k, v in counts.items()), srv.calls))
    if not ok:
        print('# seed %d; rerun with FUZZ_SEED=%d' % (seed, seed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
