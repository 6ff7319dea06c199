#!/usr/bin/python3
"""bench/live/cpu_sampler.py OUT POSTMASTER_PID PID=NAME...: every second, the CPU (cores) of each named process and of
PostgreSQL's processes grouped by their title (backends by user, autovacuum, checkpointer, walwriter, ...), one line per
second to OUT ("t name=cores ..."), until killed. Shows where the CPU went when a run's latency grows."""
import os, sys, time

out, pm = sys.argv[1], int(sys.argv[2])
named = dict(a.split("=", 1) for a in sys.argv[3:])
tck = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return None


def pg_group(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().decode(errors="replace").replace("\0", " ").strip()
    except OSError:
        return None
    if not title.startswith("postgres:"):
        return "pg-postmaster"
    words = title[len("postgres:"):].split()
    if len(words) >= 3 and (words[2].startswith("[local]") or "(" in words[2] or words[2][:1].isdigit()):
        return "pg-" + words[0]  # a backend: by its user (postgres: the writer and psql; pulse_proxy: the proxy)
    return "pg-" + "_".join(words[:2])  # checkpointer, walwriter, autovacuum worker, ...


def sample():
    s = {}
    for pid, name in named.items():
        v = ticks(pid)
        if v is not None:
            s[name] = s.get(name, 0) + v
    kids = [pm]
    for d in os.listdir(f"/proc/{pm}/task"):
        try:
            kids += [int(x) for x in open(f"/proc/{pm}/task/{d}/children").read().split()]
        except OSError:
            pass
    for pid in kids:
        g, v = pg_group(pid), ticks(pid)
        if g is not None and v is not None:
            s[g] = s.get(g, 0) + v
    # per-pid so that a process that exits between samples does not count negative
    return s, {pid: ticks(pid) for pid in kids}


t0 = time.time()
prev, _ = sample()
with open(out, "w", buffering=1) as f:
    while True:
        time.sleep(1)
        cur, _ = sample()
        parts = [f"{k}={(cur[k] - prev.get(k, 0)) / tck:.2f}" for k in sorted(cur) if cur[k] > prev.get(k, 0)]
        f.write(f"{time.time() - t0:.0f} " + " ".join(parts) + "\n")
        prev = cur
