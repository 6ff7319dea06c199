#!/usr/bin/python3
"""bench/live/cpu_table.py RUN BUSY CPUFILE: one Markdown row of bench/live/run.sh's CPU table from cpu_sampler.py's
per-second file: the run, the machine's busy share (BUSY, from /proc/stat), then the mean cores over the run of the
proxy, PostgreSQL's backends of the proxy (user pulse_proxy), PostgreSQL's other processes (the writer's backend,
walwriter, ...), the load client and the writer."""
import sys
from collections import defaultdict

run, busy, path = sys.argv[1:4]
tot, n = defaultdict(float), 0
for line in open(path):
    parts = line.split()
    n += 1
    for p in parts[1:]:
        k, v = p.split("=")
        tot[k] += float(v)
mean = lambda k: tot[k] / max(n, 1)
pg_other = sum(v for k, v in tot.items() if k.startswith("pg-") and k != "pg-pulse_proxy") / max(n, 1)
print(f"| {run} | {busy} | {mean('proxy'):.2f} | {mean('pg-pulse_proxy'):.2f} | {pg_other:.2f} | {mean('client'):.2f} | "
      f"{mean('writer'):.2f} |")
