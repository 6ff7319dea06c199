#!/usr/bin/env python3
"""cache_history.py: the response cache against a history of commits and reads.

Keys hold a per-key version that every write raises by one in its own
transaction (proxy/test/history.sql).  Writers commit through SQL and
through a write endpoint of the proxies; readers read through two proxies.
Every write records its version and when its COMMIT had returned (for a write
through a proxy: when the proxy's answer arrived); every read records when it
started (before its request was sent) and ended, the proxy, X-Cache and the
version it saw.  The run goes through fault phases (none; the LISTEN
connection killed; frozen; its reconnect refused; Redis killed and
restarted; catalog reloads in a loop; none again).

The oracle, per key: no read that started more than BOUND after a write's
commit returned a version older than that write's.  BOUND is the proxy's
documented staleness bound (invalidation_heartbeat_ms +
invalidation_delivery_ms).  Client-side times only make the check weaker,
never wrong: a recorded commit time is after the real one, a recorded read
start before the proxy saw the request.  Also checked: no read returns a
version no write had begun before it ended.

Prints the seed, per-phase stats (reads, hits, misses, stale, errors, the
largest staleness observed) and every violation (key, versions, times,
proxy, X-Cache); writes a JSON summary and, on failure, the minimal case
(the violating read and the writes of its key it missed).  Exit status 1
when the oracle fails.

Randomness (which key each client reads or writes, the writers' pauses) comes
from --seed; the interleaving itself is the machine's.
"""
import argparse
import asyncio
import bisect
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time

now = time.monotonic  # CLOCK_MONOTONIC, the clock of the proxy's heartbeats


# --- PostgreSQL wire protocol, just enough: trust authentication, simple queries ---------------------------------------
class PGError(Exception):
    pass


class PG:
    @classmethod
    async def connect(cls, host, port, user, db, appname="pulse-history"):
        self = cls()
        self.r, self.w = await asyncio.open_connection(host, port)
        params = b"".join(x.encode() + b"\0" for x in ("user", user, "database", db, "application_name", appname)) + b"\0"
        self.w.write(struct.pack("!ii", 8 + len(params), 196608) + params)
        await self._until_ready()
        return self

    async def _until_ready(self):
        rows, err = [], None
        while True:
            head = await self.r.readexactly(5)
            body = await self.r.readexactly(struct.unpack("!i", head[1:])[0] - 4)
            t = head[0:1]
            if t == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise PGError("only trust authentication is supported")
            if t == b"E":
                fields = dict((f[0:1], f[1:].decode()) for f in body.split(b"\0") if f)
                err = "%s: %s" % (fields.get(b"C", "?"), fields.get(b"M", "?"))
            elif t == b"D":
                n, pos, row = struct.unpack("!h", body[:2])[0], 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    row.append(None if ln < 0 else body[pos:pos + ln].decode())
                    pos += max(ln, 0)
                rows.append(row)
            elif t == b"Z":
                if err is not None:
                    raise PGError(err)
                return rows

    async def query(self, sql):
        data = sql.encode() + b"\0"
        self.w.write(b"Q" + struct.pack("!i", 4 + len(data)) + data)
        return await self._until_ready()

    def close(self):
        self.w.close()


# --- HTTP/1.1 with keep-alive ----------------------------------------------------------------------------------------
class HTTP:
    @classmethod
    async def connect(cls, addr, token):
        self = cls()
        host, port = addr.rsplit(":", 1)
        self.r, self.w = await asyncio.open_connection(host, int(port))
        self.auth = ("Authorization: Bearer %s\r\n" % token) if token else ""
        return self

    async def request(self, method, path, body=None):
        head = "%s %s HTTP/1.1\r\nHost: pulse\r\n%s" % (method, path, self.auth)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.w.write((head + "\r\n").encode() + (body or b""))
        raw = await self.r.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        data = await self.r.readexactly(n) if n else b""
        return status, hdrs, data

    def close(self):
        self.w.close()


# --- the run ---------------------------------------------------------------------------------------------------------
class Run:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.proxies = dict(p.split("=", 1) for p in a.proxy)
        self.writes = []  # (key, version, t_start, t_end, via)
        self.failed_writes = {}  # key -> writes that failed (may have committed)
        self.reads = []  # (key, version, t_start, t_end, proxy, xcache, status, phase)
        self.ready = {}  # (phase, proxy) -> {state: count}
        self.phase = 0
        self.phase_names = []
        self.stop = False
        self.t0 = now()

    def key(self, g, k):
        return g * self.a.keys + k

    async def reader(self, proxy, seed):
        rng, conn, addr = random.Random(seed), None, self.proxies[proxy]
        while not self.stop:
            g, k = rng.randrange(self.a.groups), rng.randrange(self.a.keys)
            try:
                if conn is None:
                    conn = await HTTP.connect(addr, self.a.token)
                t0 = now()
                status, hdrs, body = await asyncio.wait_for(conn.request("GET", "/rpc/kv_g%d?k=%d" % (g, k)), 10)
                t1 = now()
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError):
                if conn is not None:
                    conn.close()
                conn = None
                self.reads.append((self.key(g, k), None, now(), now(), proxy, "-", 0, self.phase))
                await asyncio.sleep(0.05)
                continue
            v = json.loads(body)["v"] if status == 200 else None
            self.reads.append((self.key(g, k), v, t0, t1, proxy, hdrs.get("x-cache", "-"), status, self.phase))
        if conn is not None:
            conn.close()

    async def sql_writer(self, seed):
        rng = random.Random(seed)
        pg = await PG.connect(self.a.pg_host, self.a.pg_port, self.a.user, self.a.db, "pulse-history writer")
        while not self.stop:
            g, k = rng.randrange(self.a.groups), rng.randrange(self.a.keys)
            t0 = now()
            rows = await pg.query("UPDATE hist.g%d SET v = v + 1 WHERE k = %d RETURNING v" % (g, k))
            self.writes.append((self.key(g, k), int(rows[0][0]), t0, now(), "sql"))
            await asyncio.sleep(rng.uniform(self.a.write_pause_ms[0], self.a.write_pause_ms[1]) / 1000.0)
        pg.close()

    async def proxy_writer(self, seed, names):
        rng, conns = random.Random(seed), {}
        i = 0
        while not self.stop:
            proxy = names[i % len(names)]
            i += 1
            g, k = rng.randrange(self.a.groups), rng.randrange(self.a.keys)
            t0 = now()
            try:
                if proxy not in conns:
                    conns[proxy] = await HTTP.connect(self.proxies[proxy], self.a.token)
                status, _, body = await asyncio.wait_for(
                    conns[proxy].request("POST", "/rpc/bump_g%d" % g, json.dumps({"k": k}).encode()), 10)
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError):
                conns.pop(proxy).close()
                status = 0
            if status == 200:
                self.writes.append((self.key(g, k), json.loads(body)["v"], t0, now(), "proxy " + proxy))
            else:  # it may have committed all the same
                self.failed_writes[self.key(g, k)] = self.failed_writes.get(self.key(g, k), 0) + 1
            await asyncio.sleep(rng.uniform(self.a.write_pause_ms[0], self.a.write_pause_ms[1]) / 1000.0)
        for c in conns.values():
            c.close()

    async def ready_poller(self, proxy):
        conn = None
        while not self.stop:
            state = "unreachable"
            try:
                if conn is None:
                    conn = await HTTP.connect(self.proxies[proxy], None)
                status, _, body = await asyncio.wait_for(conn.request("GET", "/ready"), 5)
                state = json.loads(body).get("invalidation", "?") if status == 200 else "unready"
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError):
                if conn is not None:
                    conn.close()
                conn = None
            d = self.ready.setdefault((self.phase, proxy), {})
            d[state] = d.get(state, 0) + 1
            await asyncio.sleep(0.1)

    # --- faults ---
    async def fwd(self, cmd):
        r, w = await asyncio.open_connection("127.0.0.1", self.a.fwd_control)
        w.write((cmd + "\n").encode())
        reply = (await r.readline()).decode().strip()
        w.close()
        return reply

    async def catalog_backends(self, admin, proxy=None):
        """pids of the catalog (LISTEN) backends; of one proxy: the one behind the forwarder or the others"""
        rows = await admin.query("SELECT pid, client_port FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'")
        if proxy is None:
            return [int(r[0]) for r in rows]
        behind = set((await self.fwd("ports")).split()) if self.a.fwd_control else set()
        want_behind = proxy == self.a.fwd_proxy
        return [int(r[0]) for r in rows if (r[1] in behind) == want_behind]

    def stopped(self, pids):
        with open(self.a.stopped_file, "w") as f:
            f.write(" ".join(str(p) for p in pids))

    def log(self, msg):
        print("# %7.3f s %s" % (now() - self.t0, msg), flush=True)

    async def phase_none(self, admin, dur):
        await asyncio.sleep(dur)

    phase_after = phase_none

    async def phase_kill(self, admin, dur):
        await asyncio.sleep(0.3)
        for _ in range(2):
            pids = await self.catalog_backends(admin)
            await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pulse-proxy catalog'")
            self.log("LISTEN connections killed: %s" % pids)
            await asyncio.sleep(dur / 2 - 0.3)
        await asyncio.sleep(0.3)

    async def phase_freeze(self, admin, dur):
        await asyncio.sleep(0.3)
        others = [p for p in self.proxies if p != self.a.fwd_proxy]
        pids = []
        for p in others:
            pids += await self.catalog_backends(admin, p)
        self.stopped(pids)
        await self.fwd("freeze")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        self.log("LISTEN frozen for %.1f s: proxy %s through the forwarder, proxy %s by SIGSTOP of backend %s" %
                 (self.a.freeze_s, self.a.fwd_proxy, ",".join(others), pids))
        try:
            await asyncio.sleep(self.a.freeze_s)
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            await self.fwd("thaw")
            self.stopped([])
        self.log("thawed")
        await asyncio.sleep(max(dur - 0.3 - self.a.freeze_s, 0))

    async def phase_delay(self, admin, dur):
        await asyncio.sleep(0.3)
        await self.fwd("refuse %d" % self.a.refuse_ms)
        await self.fwd("kill")
        for p in self.proxies:
            if p != self.a.fwd_proxy:
                for pid in await self.catalog_backends(admin, p):
                    await admin.query("SELECT pg_terminate_backend(%d)" % pid)
        self.log("LISTEN killed; proxy %s's reconnects refused for %d ms" % (self.a.fwd_proxy, self.a.refuse_ms))
        await asyncio.sleep(dur - 0.3)

    async def phase_redis(self, admin, dur):
        await asyncio.sleep(0.3)
        with open(self.a.redis_pidfile) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, signal.SIGKILL)
        self.log("Redis killed (pid %d)" % pid)
        await asyncio.sleep(1.5)
        subprocess.run(self.a.redis_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
        self.log("Redis restarted")
        await asyncio.sleep(dur - 1.8)

    async def phase_reload(self, admin, dur):
        end, n = now() + dur, 0
        while now() < end:
            await admin.query("NOTIFY pulse_reload")
            n += 1
            await asyncio.sleep(0.1)
        self.log("%d catalog reloads asked for while writing" % n)

    async def main(self):
        a = self.a
        admin = await PG.connect(a.pg_host, a.pg_port, a.user, a.db, "pulse-history admin")
        plan = [(p, getattr(self, "phase_" + p.split(":")[0]), float(p.split(":")[1])) for p in a.phases.split()]
        tasks = []
        names = sorted(self.proxies)
        for i in range(a.readers):
            tasks.append(asyncio.ensure_future(self.reader(names[i % len(names)], self.rng.getrandbits(32))))
        for i in range(a.sql_writers):
            tasks.append(asyncio.ensure_future(self.sql_writer(self.rng.getrandbits(32))))
        for i in range(a.proxy_writers):
            tasks.append(asyncio.ensure_future(self.proxy_writer(self.rng.getrandbits(32), names[i % len(names):] + names[:i % len(names)])))
        for p in names:
            tasks.append(asyncio.ensure_future(self.ready_poller(p)))
        deadline = self.t0 + a.seconds
        cycle = 0
        while True:
            for name, fn, dur in plan:
                self.phase_names.append(name.split(":")[0] + ("" if cycle == 0 else "#%d" % (cycle + 1)))
                self.phase = len(self.phase_names) - 1
                self.log("phase %s" % self.phase_names[-1])
                await fn(admin, dur)
            cycle += 1
            if now() >= deadline:
                break
        self.stop = True
        t_stop = now()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self.log("clients stopped in %.3f s" % (now() - t_stop))
        for r in results:
            if isinstance(r, Exception):
                raise r
        self.metrics = {}
        for p in names:
            try:
                conn = await HTTP.connect(self.proxies[p], None)
                _, _, body = await conn.request("GET", "/metrics")
                conn.close()
                self.metrics[p] = parse_metrics(body.decode())
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.metrics[p] = {}
        admin.close()


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line.startswith(("pulse_invalidation_", "pulse_cache_unverified")):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


# --- the oracle ------------------------------------------------------------------------------------------------------
def analyze(run, bound):
    """returns (violations, staleness per read index); a violation is a dict"""
    per_key = {}
    for w in run.writes:
        per_key.setdefault(w[0], []).append(w)
    index = {}
    for key, ws in per_key.items():
        ws.sort(key=lambda w: w[1])
        versions = [w[1] for w in ws]
        # earliest commit among the writes of version >= versions[i], and which write it is
        suffix = [None] * len(ws)
        best = None
        for i in range(len(ws) - 1, -1, -1):
            if best is None or ws[i][3] < best[3]:
                best = ws[i]
            suffix[i] = best
        starts = sorted(ws, key=lambda w: w[2])
        index[key] = (versions, suffix, [w[2] for w in starts], [w[1] for w in starts])
    violations, stale = [], []
    for n, rd in enumerate(run.reads):
        key, v, t0, t1 = rd[0], rd[1], rd[2], rd[3]
        if v is None:
            stale.append(0.0)
            continue
        versions, suffix, start_times, start_versions = index.get(key, ([], [], [], []))
        i = bisect.bisect_right(versions, v)
        s = 0.0
        if i < len(versions):
            missed = suffix[i]
            s = max(t0 - missed[3], 0.0)
            if s > bound:
                violations.append({"kind": "stale", "read": n, "missed": missed, "staleness": s})
        stale.append(s)
        # a version no write had begun before the read ended (unless a write of the key failed: it may have committed)
        j = bisect.bisect_left(start_times, t1)
        highest = max(start_versions[:j], default=0)
        if v > highest and key not in run.failed_writes:
            violations.append({"kind": "future", "read": n, "missed": None, "staleness": 0.0})
    return violations, stale


def report(run, bound, violations, stale, a):
    names = run.phase_names
    print("# seed %d, bound %.0f ms (heartbeat + delivery), %d phases: %s" % (a.seed, bound * 1000, len(names), " ".join(names)))
    print("# %-10s %7s %7s %7s %6s %5s %7s %10s %10s %13s  %s" % ("phase", "reads", "hit", "miss", "stale", "err", "writes",
          "maxstale", "maxst.hit", "p50/p99 read", "invalidation state seen by /ready"))
    summary = {"seed": a.seed, "bound_ms": bound * 1000, "phases": [], "violations": len(violations)}
    wt = [w[3] for w in run.writes]
    phase_starts = []
    for p, name in enumerate(names):
        rows = [(i, r) for i, r in enumerate(run.reads) if r[7] == p]
        c = {"hit": 0, "miss": 0, "stale": 0}
        err = 0
        for _, r in rows:
            if r[6] != 200:
                err += 1
            else:
                c[r[5]] = c.get(r[5], 0) + 1
        lat = sorted(r[3] - r[2] for _, r in rows)
        p50, p99 = (lat[int(q * (len(lat) - 1))] * 1000 if lat else 0.0 for q in (0.5, 0.99))
        ms = max((stale[i] for i, _ in rows), default=0.0) * 1000
        msh = max((stale[i] for i, r in rows if r[5] == "hit"), default=0.0) * 1000
        t_first = min((r[2] for _, r in rows), default=None)
        t_last = max((r[3] for _, r in rows), default=None)
        nw = sum(1 for t in wt if t_first is not None and t_first <= t <= t_last)
        ready = {p2: run.ready.get((p, p2), {}) for p2 in sorted(run.proxies)}
        rs = "  ".join("%s: %s" % (k, ",".join("%s %d" % kv for kv in sorted(v.items()))) for k, v in ready.items())
        print("# %-10s %7d %7d %7d %6d %5d %7d %8.1fms %8.1fms %5.1f/%5.1fms  %s" %
              (name, len(rows), c["hit"], c["miss"], c["stale"], err, nw, ms, msh, p50, p99, rs))
        per_proxy = {}
        for _, r in rows:
            d = per_proxy.setdefault(r[4], {"reads": 0, "hit": 0})
            d["reads"] += 1
            d["hit"] += r[5] == "hit" and r[6] == 200
        summary["phases"].append({"name": name, "reads": len(rows), "hit": c["hit"], "miss": c["miss"], "stale": c["stale"],
                                  "errors": err, "max_staleness_ms": ms, "max_staleness_hit_ms": msh, "ready": ready,
                                  "per_proxy": per_proxy})
    reads = [r for r in run.reads]
    ok = [r for r in reads if r[6] == 200]
    hits = sum(1 for r in ok if r[5] == "hit")
    by = {}
    for w in run.writes:
        by[w[4].split()[0]] = by.get(w[4].split()[0], 0) + 1
    maxs = max(stale, default=0.0) * 1000
    print("# total: %d reads (%d hit, %d miss, %d stale, %d errors), %d writes (%s), %d keys" %
          (len(reads), hits, sum(1 for r in ok if r[5] == "miss"), sum(1 for r in ok if r[5] == "stale"), len(reads) - len(ok),
           len(run.writes), ", ".join("%s %d" % kv for kv in sorted(by.items())), a.groups * a.keys))
    print("# max staleness of any read: %.1f ms (bound %.0f ms); violations: %d" % (maxs, bound * 1000, len(violations)))
    for p, m in sorted(run.metrics.items()):
        keys = ["pulse_invalidation_unverified_seconds_total", "pulse_cache_unverified_total",
                'pulse_invalidation_heartbeats_total{result="missed"}', "pulse_invalidation_reconnects_total",
                "pulse_invalidation_resyncs_total"]
        print("# proxy %s: %s" % (p, ", ".join("%s %g" % (k.replace("pulse_", ""), m.get(k, -1)) for k in keys)))
    summary.update({"reads": len(reads), "hits": hits, "errors": len(reads) - len(ok), "writes": len(run.writes),
                    "max_staleness_ms": maxs, "metrics": run.metrics})
    shown = 0
    for v in violations:
        r = run.reads[v["read"]]
        if shown < 10:
            if v["kind"] == "stale":
                m = v["missed"]
                print("not ok - key %d: read [%.3f s, %.3f s] via proxy %s (X-Cache %s, phase %s) saw v%d, but v%d (%s) "
                      "committed at %.3f s, %.1f ms before the read started (bound %.0f ms)" %
                      (r[0], r[2] - run.t0, r[3] - run.t0, r[4], r[5], names[r[7]], r[1], m[1], m[4], m[3] - run.t0,
                       v["staleness"] * 1000, bound * 1000))
            else:
                print("not ok - key %d: read [%.3f s, %.3f s] via proxy %s (X-Cache %s) saw v%d, which no write had begun" %
                      (r[0], r[2] - run.t0, r[3] - run.t0, r[4], r[5], r[1]))
        shown += 1
    if violations:
        print("# seed %d: %d violations (first 10 shown)" % (a.seed, len(violations)))
        first = min((v for v in violations if v["kind"] == "stale"), key=lambda v: run.reads[v["read"]][2], default=violations[0])
        r = run.reads[first["read"]]
        case = {"seed": a.seed, "bound_ms": bound * 1000, "kind": first["kind"],
                "read": {"key": r[0], "version": r[1], "start_s": r[2] - run.t0, "end_s": r[3] - run.t0, "proxy": r[4],
                         "x_cache": r[5], "phase": names[r[7]]},
                "writes_missed": [{"version": w[1], "start_s": w[2] - run.t0, "commit_s": w[3] - run.t0, "via": w[4]}
                                  for w in sorted(run.writes, key=lambda w: w[1])
                                  if w[0] == r[0] and w[1] > r[1] and w[3] + bound < r[2]]}
        with open(a.case, "w") as f:
            json.dump(case, f, indent=1)
        print("# minimal failing case (the read, and the writes of its key committed more than the bound before it): %s" % a.case)
    with open(a.summary, "w") as f:
        json.dump(summary, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--proxy", action="append", required=True, help="NAME=HOST:PORT (twice or more)")
    p.add_argument("--pg", required=True, help="HOST:PORT of PostgreSQL (trust authentication)")
    p.add_argument("--db", required=True)
    p.add_argument("--user", default="postgres")
    p.add_argument("--token", required=True)
    p.add_argument("--bound-ms", type=float, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--seconds", type=float, default=0, help="run the phases again until this much time has passed")
    p.add_argument("--phases", default="none:3 kill:3 freeze:4.5 delay:3.5 redis:3 reload:3 after:2")
    p.add_argument("--freeze-s", type=float, default=3.0)
    p.add_argument("--refuse-ms", type=int, default=2000)
    p.add_argument("--fwd-control", type=int, default=0)
    p.add_argument("--fwd-proxy", default="A")
    p.add_argument("--redis-pidfile", required=True)
    p.add_argument("--redis-cmd", required=True)
    p.add_argument("--stopped-file", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--readers", type=int, default=12)
    p.add_argument("--sql-writers", type=int, default=2)
    p.add_argument("--proxy-writers", type=int, default=2)
    p.add_argument("--write-pause-ms", type=float, nargs=2, default=[10, 50])
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--keys", type=int, default=8)
    a = p.parse_args()
    if a.seed is None:
        a.seed = int.from_bytes(os.urandom(4), "big")
    print("# seed %d" % a.seed, flush=True)
    a.pg_host, a.pg_port = a.pg.rsplit(":", 1)
    a.pg_port = int(a.pg_port)
    run = Run(a)
    asyncio.run(run.main())
    bound = a.bound_ms / 1000.0
    t = now()
    violations, stale = analyze(run, bound)
    print("# analysis took %.2f s" % (now() - t))
    report(run, bound, violations, stale, a)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
