#!/usr/bin/python3
"""live.py: end-to-end checks of live endpoints (issue 18), run by proxy/test/live.sh.

Usage: live.py DSN SECRET URL_A URL_C URL_D PID_A PID_D
(A: heartbeat 1 s, retry hint 1500 ms; C: live_max_streams 3, _tenant 2, live_min_interval_ms 1000; D: ratelimit_read
tenant=1/2). Each check prints one TAP line; a failure prints what it saw.
"""
import hashlib, hmac, base64, json, os, re, signal, socket, sys, time

import psycopg2

sys.dont_write_bytecode = True  # no __pycache__ in the tree for sse.py
from sse import parse_block  # noqa: E402

DSN, SECRET, A, C, D = sys.argv[1:6]
PID_A, PID_D = int(sys.argv[6]), int(sys.argv[7])


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(tenant, exp_in=3600):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"tenant": tenant, "exp": int(time.time()) + exp_in}).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def etag_of(data):
    return '"' + hashlib.sha256(data.encode()).hexdigest()[:32] + '"'


db = psycopg2.connect(DSN)
db.autocommit = True


def sql(q, *args):
    with db.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else None


def rid(t, g, i):
    return t * 100000 + g * 100 + i


sql("TRUNCATE lv.items")
for t in range(1, 6):
    for g in range(1, 5):
        for i in range(1, 4):
            sql("INSERT INTO lv.items VALUES (%s, %s, %s, 0)", rid(t, g, i), t, t * 1000 + g)


def group_json(grp):
    rows = sql("SELECT id, v FROM lv.items WHERE grp = %s ORDER BY id", grp)
    return [{"id": r[0], "v": r[1]} for r in rows]


def setv(grp, v, only=None):
    if only is None:
        sql("UPDATE lv.items SET v = %s WHERE grp = %s", v, grp)
    else:
        sql("UPDATE lv.items SET v = %s WHERE id = %s", v, only)


class Stream:
    """one HTTP/1.1 request on its own socket; a 200 text/event-stream response is read event by event"""

    def __init__(self, base, path, headers=None, method="GET", rcvbuf=None):
        host, port = base.split("//")[1].split(":")
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, int(port)))
        h = {"Host": host, "Accept": "text/event-stream"}
        h.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
        if method == "POST":
            head += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        else:
            head += "\r\n"
        self.sock.sendall(head.encode())
        self.raw, self.text, self.ended, self.status, self.headers, self.body = b"", "", False, None, {}, b""
        self._head()

    def _recv(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.time()))
        try:
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError:
            d = b""
        if not d:
            self.ended = True
            return False
        self.raw += d
        return True

    def _head(self):
        deadline = time.time() + 10
        while b"\r\n\r\n" not in self.raw and time.time() < deadline and not self.ended:
            self._recv(deadline)
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.raw) < n and time.time() < deadline and not self.ended:
                self._recv(deadline)
            self.body = self.raw[:n]

    def _dechunk(self):
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + size + 2:
                return
            if size == 0:
                self.ended = True
            self.text += self.raw[i + 2:i + 2 + size].decode()
            self.raw = self.raw[i + 4 + size:]

    def next_block(self, timeout):
        """the next block of the stream (a dict: event, id, data, retry, comment), or None at the timeout or its end"""
        deadline = time.time() + timeout
        while True:
            self._dechunk()
            if "\n\n" in self.text:
                block, self.text = self.text.split("\n\n", 1)
                return parse_block(block)
            if self.ended or time.time() >= deadline:
                return None
            self._recv(deadline)

    def next_event(self, timeout, kind="result"):
        """the next block with an event of `kind` (blocks without one are skipped), or None"""
        deadline = time.time() + timeout
        while time.time() < deadline:
            b = self.next_block(deadline - time.time())
            if b is None:
                return None
            if b.get("event") == kind:
                return b
        return None

    def close(self):
        self.sock.close()


def path(ep, grp=None, tenant=1, tok=None):
    q = f"grp={grp}&" if grp is not None else ""
    return f"/rpc/{ep}?{q}access_token={tok or token(tenant)}"


def metrics(base):
    out = {}
    for line in socket_get(base, "/metrics").splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def socket_get(base, p):
    import urllib.request
    return urllib.request.urlopen(base + p, timeout=10).read().decode()


def refreshes(m):
    return sum(v for k, v in m.items() if k.startswith("pulse_live_refreshes_total{") and "failed" not in k)


N = [0, 0]


def tap(ok, desc, detail=None):
    N[0 if ok else 1] += 1
    print(f"{'ok' if ok else 'not ok'} {N[0] + N[1]} - {desc}")
    if not ok and detail is not None:
        print("#   " + str(detail)[:600].replace("\n", "\n#   "))


def problem(s):
    try:
        return s.headers.get("content-type", "").startswith("application/problem+json") and json.loads(s.body)["status"] == s.status
    except Exception:  # noqa: BLE001
        return False


# 1. the first result --------------------------------------------------------------------------------------------------
s = Stream(A, path("lv_group", 1001))
first = s.next_block(5) or {}
want = json.dumps(group_json(1001), separators=(",", ":"))
tap(s.status == 200 and s.headers.get("content-type") == "text/event-stream" and s.headers.get("cache-control") == "no-store",
    "a GET with Accept: text/event-stream answers 200 text/event-stream, no-store", (s.status, s.headers))
tap(first.get("retry") == "1500" and first.get("event") == "result" and first.get("id") == etag_of(first.get("data") or "")
    and json.loads(first.get("data") or "null") == group_json(1001),
    "the first block: retry: (live_retry_ms), then the current result with its ETag as id", (first, want))

# 2. a committed write pushes the new result ---------------------------------------------------------------------------
t0 = time.time()
setv(1001, 7)
ev = s.next_event(5) or {}
tap(json.loads(ev.get("data") or "null") == group_json(1001) and ev.get("id") == etag_of(ev.get("data") or ""),
    f"a committed write to the group pushes its new result ({(time.time() - t0) * 1000:.0f} ms)", ev)

# 3. a bump that does not change the result pushes nothing; the next change does ---------------------------------------
m0 = metrics(A)
setv(1001, 7)  # same values: the tag is bumped, the result is the same
ev = s.next_event(1.5)
m1 = metrics(A)
tap(ev is None and m1.get('pulse_live_refreshes_total{result="unchanged"}', 0) > m0.get('pulse_live_refreshes_total{result="unchanged"}', 0),
    "a bump whose result did not change is refreshed but not pushed", (ev, m1.get('pulse_live_refreshes_total{result="unchanged"}')))
setv(1001, 8, only=rid(1, 1, 2))
ev = s.next_event(5) or {}
tap(json.loads(ev.get("data") or "null") == group_json(1001), "the next change is pushed", ev)

# 4. a bump of another key does not wake this one ----------------------------------------------------------------------
setv(1002, 5)
ev = s.next_event(1.0)
tap(ev is None, "a write to another group (another keyed tag) pushes nothing to this key", ev)
last_id = None
s.close()

# 5. one refresh per change, shared by every stream of the key, across loops --------------------------------------------
time.sleep(0.3)
subs = [Stream(A, path("lv_group", 1003)) for _ in range(6)]
firsts = [x.next_event(5) for x in subs]
time.sleep(0.3)
m0 = metrics(A)
setv(1003, 11)
got = [x.next_event(5) for x in subs]
time.sleep(0.3)
m1 = metrics(A)
calls = refreshes(m1) - refreshes(m0)
shared = m1.get("pulse_live_refreshes_shared_total", 0) - m0.get("pulse_live_refreshes_shared_total", 0)
tap(all(firsts) and all(g is not None and json.loads(g["data"]) == group_json(1003) for g in got) and calls == 1 and shared == 5,
    f"six streams of one key: one write, {calls:.0f} database call(s), {shared:.0f} streams served by it (want 1 and 5)",
    [g and g.get("data") for g in got])
for x in subs:
    x.close()

# 6. RLS: the refresh runs in the subscriber's tenant scope ------------------------------------------------------------
s2 = Stream(A, path("lv_group", 1001, tenant=2))
ev = s2.next_event(5) or {}
tap(ev.get("data") == "[]", "another tenant's stream of a group sees no rows (row-level security, its own tenant scope)", ev)
setv(1001, 12)
ev = s2.next_event(1.5)
tap(ev is None, "... and a write to those rows pushes it nothing", ev)
s2.close()

# 7. Last-Event-ID ------------------------------------------------------------------------------------------------------
s = Stream(A, path("lv_group", 1004))
ev = s.next_event(5) or {}
cur = ev.get("id")
s.close()
s = Stream(A, path("lv_group", 1004), {"Last-Event-ID": cur})
b = s.next_block(1.5) or {}
tap(s.status == 200 and "event" not in b and b.get("retry") == "1500",
    "a resume with Last-Event-ID equal to the current ETag gets no result (only the retry hint)", b)
setv(1004, 13)
ev = s.next_event(5) or {}
tap(json.loads(ev.get("data") or "null") == group_json(1004) and ev.get("id") != cur, "... then the next change", ev)
s.close()
s = Stream(A, path("lv_group", 1004), {"Last-Event-ID": cur})  # cur is stale now
ev = s.next_event(2) or {}
tap(json.loads(ev.get("data") or "null") == group_json(1004), "a resume from an older ETag gets the current result at once", ev)
s.close()
s = Stream(A, path("lv_group", 1004), {"Last-Event-ID": "garbage\u00e9"})
ev = s.next_event(2) or {}
tap(json.loads(ev.get("data") or "null") == group_json(1004), "a Last-Event-ID that is no ETag gets the current result", ev)

# 8. heartbeat ---------------------------------------------------------------------------------------------------------
b = s.next_block(3) or {}
tap(b.get("comment") == "heartbeat" and "event" not in b, "an idle stream gets a heartbeat comment (live_heartbeat_ms 1 s)", b)
s.close()

# 9. the token's expiry ends the stream with an error event -------------------------------------------------------------
s = Stream(A, path("lv_group", 1002, tok=token(1, exp_in=2)))
ev = s.next_event(5)
err = s.next_event(5, kind="error") or {}
doc = json.loads(err.get("data") or "{}")
end = s.next_block(2)
tap(ev is not None and doc.get("status") == 401 and "expired" in doc.get("detail", "") and end is None and s.ended,
    "a stream whose token expires ends with an `error` event (problem+json 401) and its last chunk", (ev, err, s.ended))
s.close()

# 10. bad input --------------------------------------------------------------------------------------------------------
r = Stream(A, "/rpc/lv_set", {"Authorization": f"Bearer {token(1)}"}, method="POST")
tap(r.status == 406 and problem(r), "Accept: text/event-stream on a write endpoint (POST): 406 problem+json", (r.status, r.body))
r = Stream(A, path("lv_set"))
tap(r.status == 405 and problem(r), "... a GET of a write endpoint: 405 problem+json", (r.status, r.body))
r = Stream(A, "/rpc/lv_group", {"Authorization": f"Bearer {token(1)}"}, method="POST")
tap(r.status == 406 and problem(r), "... a POST of a read endpoint: 406 problem+json", (r.status, r.body))
r = Stream(A, path("lv_untagged"))
tap(r.status == 406 and problem(r), "an endpoint without tags: 406 problem+json", (r.status, r.body))
r = Stream(A, path("lv_group", "abc"))
tap(r.status == 400 and problem(r), "a bad argument: 400 problem+json", (r.status, r.body))
r = Stream(A, f"/rpc/lv_group?grp=1001&access_token={token(1)}&access_token={token(1)}")
tap(r.status == 400 and problem(r), "access_token twice: 400 problem+json", (r.status, r.body))
r = Stream(A, path("lv_group", 1001), {"Authorization": f"Bearer {token(1)}"})
tap(r.status == 400 and problem(r), "access_token and Authorization both: 400 problem+json", (r.status, r.body))
r = Stream(A, "/rpc/lv_group?grp=1001")
tap(r.status == 401 and problem(r), "no token: 401 problem+json", (r.status, r.body))
r = Stream(A, path("lv_group", 1001, tok=token(1) + "x"))
tap(r.status == 401 and problem(r), "a bad signature: 401 problem+json", (r.status, r.body))
r = Stream(A, "/rpc/lv_group?grp=1001", {"Authorization": f"Bearer {token(1)}"})
ev = r.next_event(5) or {}
tap(r.status == 200 and ev.get("data") is not None, "the token in Authorization works too (fetch-based clients)", (r.status, ev))
r.close()

# 11. caps (proxy C: 3 per proxy, 2 per tenant) -------------------------------------------------------------------------
c1, c2 = Stream(C, path("lv_group", 1001)), Stream(C, path("lv_group", 1002))
c3 = Stream(C, path("lv_group", 1003))
tap(c1.status == 200 and c2.status == 200 and c3.status == 429 and problem(c3) and c3.headers.get("retry-after"),
    "a tenant's third stream over live_max_streams_tenant 2: 429 problem+json with Retry-After", (c3.status, c3.headers, c3.body))
c4 = Stream(C, path("lv_group", 2001, tenant=2))
c5 = Stream(C, path("lv_group", 3001, tenant=3))
tap(c4.status == 200 and c5.status == 503 and problem(c5) and c5.headers.get("retry-after"),
    "a stream over live_max_streams 3: 503 problem+json with Retry-After", (c4.status, c5.status, c5.headers, c5.body))
mc = metrics(C)
tap(mc.get('pulse_live_rejected_total{reason="tenant_limit"}') == 1 and mc.get('pulse_live_rejected_total{reason="proxy_limit"}') == 1
    and mc.get('pulse_live_streams{endpoint="lv_group",class="read"}') == 3,
    "metrics: pulse_live_rejected_total by reason, pulse_live_streams by endpoint and class",
    {k: v for k, v in mc.items() if "live_rejected" in k or "live_streams{" in k})
for x in (c1, c2, c3, c4, c5):
    x.close()
# HTTP/1: a client that went away is noticed when a write fails: the second heartbeat (0.5 s on C, checked every second)
t_closed = time.time()
while True:
    c6 = Stream(C, path("lv_group", 3001, tenant=3))
    if c6.status == 200 or time.time() - t_closed > 6:
        break
    c6.close()
    time.sleep(0.25)
tap(c6.status == 200, f"closed streams free their places (after {time.time() - t_closed:.1f} s: at a heartbeat's write)", c6.status)

# 12. coalescing (proxy C: live_min_interval_ms 1000) -----------------------------------------------------------------
ev = c6.next_event(5)
time.sleep(1.2)
m0 = metrics(C)
for k in range(20):
    setv(3001, 100 + k, only=rid(3, 1, 1 + k % 3))
    time.sleep(0.02)
deadline, seen = time.time() + 5, []
while time.time() < deadline:
    e = c6.next_event(deadline - time.time())
    if e is None:
        break
    seen.append(e)
    if json.loads(e["data"]) == group_json(3001):
        break
time.sleep(1.2)
m1 = metrics(C)
calls = refreshes(m1) - refreshes(m0)
tap(seen and json.loads(seen[-1]["data"]) == group_json(3001) and calls <= 3 and len(seen) <= 3,
    f"20 writes in 0.4 s: {calls:.0f} refreshes, {len(seen)} events, the last one the final state (live_min_interval_ms)",
    [e["data"] for e in seen])
c6.close()

# 13. conflation: a consumer that does not read holds at most one result back ------------------------------------------
slow = Stream(A, path("lv_big", 4001, tenant=4), rcvbuf=4096)
m0 = metrics(A)
for k in range(30):
    setv(4001, 1000 + k, only=rid(4, 1, 1))
    time.sleep(0.05)
time.sleep(1)
m1 = metrics(A)
conflated = m1.get("pulse_live_conflated_total", 0) - m0.get("pulse_live_conflated_total", 0)
events = []
while True:
    e = slow.next_event(2)
    if e is None:
        break
    events.append(e)
final = json.loads(events[-1]["data"])["rows"] if events else None
tap(conflated > 0 and final == group_json(4001) and len(events) < 31,
    f"a slow consumer: {conflated:.0f} results conflated, {len(events)} of 31 written, the last one the final state",
    (conflated, len(events), final))
slow.close()

# 14. the invalidation channel lost: nothing pushed meanwhile; every stream refreshed once it is back -----------------
s = Stream(A, path("lv_group", 5001, tenant=5))
ev = s.next_event(5)
sql("ALTER ROLE pulse_proxy NOLOGIN")
sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'")
time.sleep(0.3)
setv(5001, 55)
ev = s.next_event(1.5)
tap(ev is None, "while the listening connection is down, nothing is pushed", ev)
sql("ALTER ROLE pulse_proxy LOGIN")
ev = s.next_event(15) or {}
tap(json.loads(ev.get("data") or "null") == group_json(5001),
    "once it is back, the resync refreshes every stream: the write made meanwhile is pushed", ev)
s.close()

# 15. metrics -----------------------------------------------------------------------------------------------------------
# the push latency counts from the bump's commit time (the pulse_commit notification), not from the notification's
# arrival: a transaction that bumps the key's tag with pulse.bump_tag (its time: the call), changes the group and sleeps
# 1 s before COMMIT is pushed with a latency of over a second, though its notifications arrive at once after the commit
s = Stream(A, path("lv_group", 4004, tenant=4))
ev0 = s.next_event(5)
time.sleep(0.3)
m0 = metrics(A)
sql("BEGIN; SELECT pulse.bump_tag('lv:grp=4004'); UPDATE lv.items SET v = 44 WHERE grp = 4004; SELECT pg_sleep(1); COMMIT")
ev = s.next_event(5) or {}
time.sleep(0.3)
m1 = metrics(A)
d_count = m1.get("pulse_live_push_latency_seconds_count", 0) - m0.get("pulse_live_push_latency_seconds_count", 0)
d_sum = m1.get("pulse_live_push_latency_seconds_sum", 0) - m0.get("pulse_live_push_latency_seconds_sum", 0)
tap(ev0 is not None and json.loads(ev.get("data") or "null") == group_json(4004) and d_count == 1 and 1.0 <= d_sum < 5,
    f"the push latency histogram counts from the bump's commit time (one push, {d_sum:.3f} s: the transaction slept 1 s)",
    (ev, d_count, d_sum))
s.close()
ma = metrics(A)
tap(ma.get("pulse_live_push_latency_seconds_count", 0) > 0 and ma.get('pulse_live_events_total{type="heartbeat"}', 0) > 0
    and ma.get('pulse_live_events_total{type="error"}', 0) >= 1 and 'pulse_slo_breaches_total{class="live",slo="p99"}' in ma,
    "metrics: push latency histogram, events by type, the live SLO class",
    {k: v for k, v in ma.items() if "live" in k and "bucket" not in k})

# 16. rate limit (proxy D: read tenant=1/2): opening a stream counts -----------------------------------------------------
ds = [Stream(D, path("lv_group", 1001)) for _ in range(4)]
st = [x.status for x in ds]
tap(st[:2] == [200, 200] and 429 in st[2:], f"opening streams counts against the read class's rate limit: {st}", st)
for x in ds:
    x.close()

# 17. a proxy that stops ends its streams cleanly (the client reconnects elsewhere) --------------------------------------
time.sleep(2.2)
s = Stream(D, path("lv_group", 1001))
ev = s.next_event(5)
os.kill(PID_D, signal.SIGTERM)
deadline = time.time() + 8
while not s.ended and time.time() < deadline:
    b = s.next_block(deadline - time.time())
    if b is not None and b.get("event") == "error":
        break
tap(ev is not None and s.ended, "SIGTERM ends an open stream with its last chunk (no error event)", (ev, s.ended))

print(f"{N[0]} passed, {N[1]} failed")
sys.exit(1 if N[1] else 0)
