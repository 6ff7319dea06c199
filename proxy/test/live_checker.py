#!/usr/bin/python3
"""live_checker.py: live streams against the history of commits (issue 18).

Several writer threads change rows of proxy/test/live_fixture.sql's lv.items
(in SQL, some through the proxies' write endpoint, some with
pulse.keyed_tag_limit = 1 so that they bump the column's epoch instead of
its keyed tags) while ~100 text/event-stream subscribers listen to the
three live endpoints over many keys, spread over the given proxies.  Each
tenant's rows are written by one writer only, so the writer knows the exact
sequence of states each key goes through (it records the state after every
COMMIT).  The oracle, per subscriber:
  - every pushed state is one of its key's states (no invented or mixed
    state), and its `id` is the ETag of its data;
  - the states pushed follow the commit order (never back in time);
  - after the writers stop, its last state is the key's final state (no
    lost last update), within SETTLE seconds;
  - a subscriber of another tenant's group only ever gets [] (RLS).
Also: some subscribers reconnect with Last-Event-ID mid-run (the first event
after a resume is never the state they had), eight more open new keys of a
slow endpoint once the writers stopped, and their groups' last write
commits while their first refresh runs (a keyed bump notified before the
key knew its keyed tags: it must be refreshed again), the listening
connections are
killed once mid-run (every key is refreshed after the resync), and the run
must not be vacuous (events pushed, refreshes shared).

Usage: live_checker.py DSN SECRET OUT_DIR URL [URL...]
Environment: LIVE_SEED (default: random, printed), LIVE_SECONDS (15),
LIVE_SUBSCRIBERS (100), LIVE_WRITERS (3).  Prints TAP lines; a failure is
written to OUT_DIR/live-checker-<seed>.json with the key's history.
"""
import base64, hashlib, hmac, json, os, random, selectors, socket, sys, threading, time, urllib.error, urllib.request

import psycopg2

sys.dont_write_bytecode = True  # no __pycache__ in the tree for sse.py
from sse import parse_block  # noqa: E402

DSN, SECRET, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
URLS = sys.argv[4:]
SEED = int(os.environ.get("LIVE_SEED") or random.randrange(1, 2**31))
SECONDS = float(os.environ.get("LIVE_SECONDS", "15"))
NSUBS = int(os.environ.get("LIVE_SUBSCRIBERS", "100"))
NWRITERS = int(os.environ.get("LIVE_WRITERS", "3"))
NLATE = 8
SETTLE = 10.0
TENANTS, GROUPS, ROWS = 6, 8, 4
print(f"# seed {SEED} (LIVE_SEED={SEED} replays its choices), {SECONDS:g} s, {NSUBS} subscribers, {NWRITERS} writers, {len(URLS)} proxies")
rng = random.Random(SEED)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(tenant):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"tenant": tenant, "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


TOKENS = {t: token(t) for t in range(1, TENANTS + 1)}


def grp_of(t, g):
    return t * 1000 + g


def row_id(t, g, i):
    return t * 100000 + g * 100 + i


# --- the model: rows and the states of each key -------------------------------------------------------------------
rows = {}  # id -> (tenant, grp, v)
for t in range(1, TENANTS + 1):
    for g in range(1, GROUPS + 1):
        for i in range(1, ROWS + 1):
            rows[row_id(t, g, i)] = (t, grp_of(t, g), 0)


def state_of(key):
    """the JSON the endpoint returns for key (tenant, endpoint, arg), as Python values"""
    t, ep, arg = key
    mine = [(rid, v) for rid, (rt, rg, v) in rows.items() if rt == t]
    if ep in ("lv_group", "lv_group_slow"):
        return [{"id": rid, "v": v} for rid, (rt, rg, v) in sorted(rows.items()) if rt == t and rg == arg]
    if ep == "lv_tenant":
        return {"n": len(mine), "sum": sum(v for _, v in mine)}
    return {"n": len(mine), "sum": sum(v for _, v in mine), "max": max((v for _, v in mine), default=None)}


def canon(state):
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


history = {}  # key -> [canon state, ...] in commit order
hist_lock = threading.Lock()


def keys_of_tenant(t):
    ks = [(t, "lv_tenant", None), (t, "lv_total", None)]
    ks += [(t, ep, grp_of(t, g)) for g in range(1, GROUPS + 1) for ep in ("lv_group", "lv_group_slow")]
    return ks


def record(tenants, at):
    with hist_lock:
        for t in tenants:
            for k in keys_of_tenant(t):
                c = canon(state_of(k))
                h = history.setdefault(k, [])
                if not h or h[-1][0] != c:
                    h.append((c, at))


# --- the database ---------------------------------------------------------------------------------------------------
db = psycopg2.connect(DSN)
db.autocommit = True
with db.cursor() as cur:
    cur.execute("TRUNCATE lv.items")
    args = [(rid, t, g, v) for rid, (t, g, v) in rows.items()]
    cur.executemany("INSERT INTO lv.items (id, tenant_id, grp, v) VALUES (%s, %s, %s, %s)", args)
record(range(1, TENANTS + 1), time.time())

# --- subscribers ----------------------------------------------------------------------------------------------------


class Sub:
    def __init__(self, n, url, tenant, key):
        self.n, self.url, self.tenant, self.key = n, url, tenant, key
        self.events = []  # (recv time, id, data text, connection number)
        self.errors = []
        self.last_id = None
        self.conn_no = 0
        self.sock = None
        self.resumes = []  # (connection number, the id it resumed from)

    def path(self):
        t, ep, arg = self.key
        q = f"grp={arg}&" if arg is not None else ""
        return f"/rpc/{ep}?{q}access_token={TOKENS[self.tenant]}"

    def connect(self, sel):
        host, port = self.url.split("//")[1].split(":")
        s = socket.create_connection((host, int(port)))
        hdrs = f"GET {self.path()} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        if self.last_id is not None:
            hdrs += f"Last-Event-ID: {self.last_id}\r\n"
            self.resumes.append((self.conn_no + 1, self.last_id))
        s.sendall((hdrs + "\r\n").encode())
        s.setblocking(False)
        self.sock, self.buf, self.head_done, self.body, self.sse = s, b"", False, b"", ""
        self.conn_no += 1
        sel.register(s, selectors.EVENT_READ, self)

    def close(self, sel):
        if self.sock is not None:
            sel.unregister(self.sock)
            self.sock.close()
            self.sock = None

    def feed(self, data, now):
        self.buf += data
        if not self.head_done:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].decode()
            self.buf = self.buf[i + 4:]
            if not head.startswith("HTTP/1.1 200"):
                self.errors.append(f"connection {self.conn_no}: {head.splitlines()[0]}")
            self.head_done = True
        while True:  # chunked
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            size = int(self.buf[:i].split(b";")[0], 16)
            if len(self.buf) < i + 2 + size + 2:
                return
            self.sse += self.buf[i + 2:i + 2 + size].decode()
            self.buf = self.buf[i + 2 + size + 2:]
            while "\n\n" in self.sse:
                block, self.sse = self.sse.split("\n\n", 1)
                self.event(block, now)

    def event(self, block, now):
        fields = parse_block(block)
        if fields.get("event") == "result":
            data = fields["data"] or ""
            self.events.append((now, fields.get("id"), data, self.conn_no))
            self.last_id = fields.get("id")
        elif fields.get("event"):
            self.errors.append(f"event {fields.get('event')}: {fields['data']}")


subs = []
for n in range(NSUBS):
    t = rng.randrange(1, TENANTS + 1)
    r = rng.random()
    if r < 0.7:
        key = (t, "lv_group", grp_of(t, rng.randrange(1, GROUPS + 1)))
    elif r < 0.85:
        key = (t, "lv_tenant", None)
    else:
        key = (t, "lv_total", None)
    tenant = t
    if n % 20 == 7:  # another tenant asks for t's group: RLS shows it nothing
        tenant = t % TENANTS + 1
        key = (t, "lv_group", grp_of(t, 1 + n % GROUPS))
    subs.append(Sub(n, URLS[n % len(URLS)], tenant, key))
# late subscribers: new keys of a slow endpoint, opened after the writers stopped; the last write of their groups
# commits while their first refresh runs (after its snapshot, before its result says which keyed tags it read)
late = []
for g, t in enumerate(rng.sample(range(1, TENANTS + 1), min(NLATE, TENANTS)) * 2):
    if len(late) == NLATE:
        break
    late.append(Sub(len(subs) + len(late), URLS[len(late) % len(URLS)], t,
                    (t, "lv_group_slow", grp_of(t, 1 + (g // TENANTS) * 4 + rng.randrange(4)))))
late_at = []
sel = selectors.DefaultSelector()
for s in subs:
    s.connect(sel)
subs += late
stop_reading = threading.Event()
resume_at = sorted((rng.uniform(2, SECONDS - 2), rng.randrange(NSUBS)) for _ in range(10))
NSUBS = len(subs)


def reader():
    while not stop_reading.is_set():
        now = time.time()
        while late_at:
            late_at.pop(0).connect(sel)
        while resume_at and resume_at[0][0] + t0 <= now:
            _, i = resume_at.pop(0)
            subs[i].close(sel)
            subs[i].connect(sel)
        for key, _ in sel.select(timeout=0.05):
            s = key.data
            try:
                data = s.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                s.errors.append(f"connection {s.conn_no} closed by the proxy")
                s.close(sel)
                continue
            s.feed(data, time.time())


t0 = time.time()
rt = threading.Thread(target=reader, daemon=True)
rt.start()

# --- writers --------------------------------------------------------------------------------------------------------
wrote = [0] * NWRITERS
stop_writing = threading.Event()
writer_errors = []


def proxy_set(t, rid, v):
    req = urllib.request.Request(URLS[rid % len(URLS)] + "/rpc/lv_set", data=json.dumps({"id": rid, "v": v}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS[t]}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def writer(w):
    wr = random.Random(SEED * 31 + w)
    conn = psycopg2.connect(DSN)
    mine = [t for t in range(1, TENANTS + 1) if t % NWRITERS == w]
    seq = 0
    try:
        while not stop_writing.is_set():
            t = wr.choice(mine)
            seq += 1
            v = (w + 1) * 10**9 + seq
            kind = wr.random()
            if kind < 0.1:  # through the proxy: one row
                rid = row_id(t, wr.randrange(1, GROUPS + 1), wr.randrange(1, ROWS + 1))
                try:
                    proxy_set(t, rid, v)
                except urllib.error.HTTPError as e:  # shed (503): did it commit? this writer alone writes the row
                    if e.code != 503:
                        raise
                    with conn.cursor() as cur:
                        cur.execute("SELECT v FROM lv.items WHERE id = %s", (rid,))
                        committed = cur.fetchone()[0] == v
                    conn.commit()
                    if not committed:
                        continue
                rows[rid] = (rows[rid][0], rows[rid][1], v)
            else:
                changed = []
                for g in wr.sample(range(1, GROUPS + 1), wr.randrange(1, 4)):
                    for i in wr.sample(range(1, ROWS + 1), wr.randrange(1, ROWS + 1)):
                        changed.append(row_id(t, g, i))
                with conn.cursor() as cur:
                    if kind < 0.2:  # over the keyed tag limit: the epochs are bumped instead
                        cur.execute("SET LOCAL pulse.keyed_tag_limit = 1")
                    cur.execute("UPDATE lv.items SET v = %s WHERE id = ANY(%s)", (v, changed))
                conn.commit()
                for rid in changed:
                    rows[rid] = (rows[rid][0], rows[rid][1], v)
            record([t], time.time())
            wrote[w] += 1
            time.sleep(wr.choice([0, 0, 0.002, 0.01, 0.03]))
    except Exception as e:  # noqa: BLE001 (reported as a failed check)
        writer_errors.append(f"writer {w}: {e!r}")
    conn.close()


writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(NWRITERS)]
for th in writers:
    th.start()
time.sleep(SECONDS / 2)
with db.cursor() as cur:  # the listening connections lost once: notifications between the kill and the resync are lost
    cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'")
    killed = cur.fetchone()[0]
time.sleep(SECONDS / 2)
stop_writing.set()
for th in writers:
    th.join()
late_at.extend(late)
time.sleep(0.1)
with db.cursor() as cur:  # the last write of the late keys' groups, one transaction
    cur.execute("BEGIN")
    for s in late:
        t, _, grp = s.key
        rid = row_id(t, grp - t * 1000, 1 + s.n % ROWS)
        cur.execute("UPDATE lv.items SET v = v + 1 WHERE id = %s", (rid,))
        rows[rid] = (rows[rid][0], rows[rid][1], rows[rid][2] + 1)
    cur.execute("COMMIT")
record({s.key[0] for s in late}, time.time())
t_end = time.time()
final = {k: h[-1][0] for k, h in history.items()}


def last_state(s):
    return canon(json.loads(s.events[-1][2])) if s.events else None


def expected(s):
    return canon([]) if s.tenant != s.key[0] else final[s.key]


deadline = time.time() + SETTLE
while time.time() < deadline and any(last_state(s) != expected(s) for s in subs):
    time.sleep(0.1)
settled = time.time() - t_end
stop_reading.set()
rt.join()

# --- the oracle -----------------------------------------------------------------------------------------------------
failures = []


def fail(s, what, **detail):
    failures.append(dict(subscriber=s.n, url=s.url, tenant=s.tenant, key=list(map(str, s.key)), what=what, **detail))


for s in subs:
    h = [c for c, _ in history.get(s.key, [])]
    pos = 0
    prev_id = None
    for at, eid, data, conn in s.events:
        want = '"' + hashlib.sha256(data.encode()).hexdigest()[:32] + '"'
        if eid != want:
            fail(s, "the event's id is not the ETag of its data", id=eid, etag=want, data=data)
        c = canon(json.loads(data))
        if s.tenant != s.key[0]:
            if c != canon([]):
                fail(s, "another tenant's rows reached the stream", data=data)
            continue
        if c not in h:
            fail(s, "a pushed state the database never had", data=data, at=at - t0,
                 history=[x for x in h[-5:]])
            continue
        i = h.index(c, pos) if c in h[pos:] else -1
        if i < 0:
            fail(s, "a state older than one pushed before it", data=data, at=at - t0, previous=h[pos])
            continue
        pos = i
    for conn, rid in s.resumes:  # a resume with Last-Event-ID never gets that same state first
        first = next((e for e in s.events if e[3] == conn), None)
        if first is not None and first[1] == rid:
            fail(s, "a resume got the state of its Last-Event-ID again", id=rid)
    if last_state(s) != expected(s):
        fail(s, "the last state is not the final one", last=last_state(s), final=expected(s),
             events=len(s.events), history_len=len(h))
    for e in s.errors:
        fail(s, "an unexpected answer", error=e)

pushed = sum(len(s.events) for s in subs)
metrics = {}
for u in URLS:
    for line in urllib.request.urlopen(u + "/metrics", timeout=10).read().decode().splitlines():
        if line.startswith("pulse_live_refreshes") or line.startswith("pulse_live_conflated") or line.startswith("pulse_live_events"):
            name, val = line.rsplit(" ", 1)
            metrics[name] = metrics.get(name, 0) + float(val)
refreshes = sum(v for k, v in metrics.items() if k.startswith("pulse_live_refreshes_total"))
shared = metrics.get("pulse_live_refreshes_shared_total", 0)

n_ok = 0
n_bad = 0


def tap(ok, desc):
    global n_ok, n_bad
    if ok:
        n_ok += 1
    else:
        n_bad += 1
    print(f"{'ok' if ok else 'not ok'} {n_ok + n_bad} - {desc}")


writes = sum(wrote)
print(f"# {writes} commits in {SECONDS:g} s ({writes / SECONDS:.0f}/s), {pushed} events to {NSUBS} subscribers, "
      f"{refreshes:.0f} refreshes ({shared:.0f} shared), {killed} listening connections killed, settled in {settled:.2f} s")
print("# " + ", ".join(f"{k}={v:.0f}" for k, v in sorted(metrics.items())))
tap(not writer_errors, "the writers ran without error" + (f": {writer_errors}" if writer_errors else ""))
kinds = {}
for f in failures:
    kinds.setdefault(f["what"], []).append(f)
for what in ["a pushed state the database never had", "the event's id is not the ETag of its data",
             "a state older than one pushed before it", "another tenant's rows reached the stream",
             "a resume got the state of its Last-Event-ID again", "the last state is not the final one",
             "an unexpected answer"]:
    bad = kinds.get(what, [])
    tap(not bad, f"no subscriber saw: {what}" + (f" ({len({f['subscriber'] for f in bad})} subscribers)" if bad else ""))
tap(writes > 100 and pushed > 2 * NSUBS and sum(1 for s in subs if len(s.events) >= 3) > NSUBS // 2,
    f"not vacuous: {writes} commits, {pushed} events, most subscribers got 3 or more")
changed = metrics.get('pulse_live_refreshes_total{result="changed"}', 0)
tap(shared > 0 and changed < pushed, f"refreshes are shared: {changed:.0f} calls that changed a result made {pushed} events")
tap(killed >= 1, f"the listening connections were killed mid-run ({killed})")
if failures:
    first = failures[0]
    key = tuple(None if x == "None" else x for x in first["key"])
    path = os.path.join(OUT, f"live-checker-{SEED}.json")
    with open(path, "w") as fp:
        json.dump(dict(seed=SEED, first=first, failures=failures[:50],
                       history={str(k): [c for c, _ in h] for k, h in history.items()
                                if str(k[0]) == key[0] and k[1] == key[1]}), fp, indent=1, default=str)
    print(f"# seed {SEED}: first failure: {json.dumps(first, default=str)[:600]}")
    print(f"# written to {path}")
print(f"{n_ok} passed, {n_bad} failed")
sys.exit(1 if n_bad else 0)
