#!/usr/bin/python3
"""bench/live/report.py WRITES RECEIPTS [FIRST]: commit -> client latency of one run of bench/live/run.sh.

WRITES: "seq group t_commit_ms" (writer.py); RECEIPTS: "client group seq t_ms" (client.mjs), one line each time a
client saw its group's newest commit grow; FIRST: "client group seq" (each client's state when recording began). A
receipt of seq s by a client carries every commit to its group since the client's previous state (the state holds
them all, coalesced ones too): each of those commits gets the latency t_ms - t_commit for that client. A commit to a
group that one of its clients never saw by the end is counted as missed (per client). Prints one JSON line."""
import bisect, json, os, sys
from collections import defaultdict

writes = defaultdict(list)  # group -> [(seq, t_commit)] in seq order
for line in open(sys.argv[1]):
    s, g, t = line.split()
    writes[int(g)].append((int(s), float(t)))
prev = {}
if len(sys.argv) > 3:
    for line in open(sys.argv[3]):
        c, g, s = line.split()
        prev[int(c)] = (int(g), int(s))
lat = []
by_second = defaultdict(list)  # second of the commit since the first commit -> latencies
t_first = min((w[1] for ws in writes.values() for w in ws), default=0.0)
for line in open(sys.argv[2]):
    c, g, s, t = line.split()
    c, g, s, t = int(c), int(g), int(s), float(t)
    ws = writes.get(g, [])
    seqs = [w[0] for w in ws]
    lo = bisect.bisect_right(seqs, prev.get(c, (g, -1))[1])
    hi = bisect.bisect_right(seqs, s)
    for _, tc in ws[lo:hi]:
        lat.append(t - tc)
        by_second[int((tc - t_first) / 1000)].append(t - tc)
    prev[c] = (g, s)
missed = 0
for c, (g, s) in prev.items():
    seqs = [w[0] for w in writes.get(g, [])]
    missed += len(seqs) - bisect.bisect_right(seqs, s)
lat.sort()
if os.environ.get("TIMELINE"):  # per second of commit time: deliveries, p50, p99, max (where do the tails come from)
    with open(os.environ["TIMELINE"], "w") as f:
        for sec in sorted(by_second):
            v = sorted(by_second[sec])
            f.write(f"{sec} {len(v)} {v[len(v) // 2]:.2f} {v[min(len(v) - 1, int(0.99 * len(v)))]:.2f} {v[-1]:.2f}\n")


def pct(p):
    return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None


print(json.dumps({"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2) if lat else None,
                  "deliveries": len(lat), "commits": sum(len(v) for v in writes.values()), "missed": missed}))
