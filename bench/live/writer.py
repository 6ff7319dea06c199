#!/usr/bin/python3
"""bench/live/writer.py DSN OUT: commits WRITES_PER_S single-row updates a second for DURATION seconds (environment) to the
groups 1..KEYS of lv.items (bench/live/run.sh), one connection, each setting its row's v to a sequence number.
Writes "seq group t_commit_ms" per commit to OUT: the wall clock when COMMIT returned (the commit is visible then;
the bump's notification is sent at commit). The rate is kept by a schedule, not by sleeping a fixed time."""
import os, random, sys, time

import psycopg2

DSN, OUT = sys.argv[1], sys.argv[2]
RATE = float(os.environ.get("WRITES_PER_S", "100"))
SECONDS = float(os.environ.get("DURATION", "10"))
KEYS = int(os.environ.get("KEYS", "50"))
ROWS = 4
rng = random.Random(int(os.environ.get("SEED", "1")))
conn = psycopg2.connect(DSN)
cur = conn.cursor()
cur.execute("SELECT coalesce(max(v), 0) FROM lv.items")
seq = cur.fetchone()[0]
conn.commit()
lines = []
t0 = time.time()
n = 0
while True:
    due = t0 + n / RATE
    now = time.time()
    if now - t0 >= SECONDS:
        break
    if due > now:
        time.sleep(due - now)
    seq += 1
    g = 1 + rng.randrange(KEYS)
    cur.execute("UPDATE lv.items SET v = %s WHERE id = %s", (seq, g * 10 + 1 + rng.randrange(ROWS)))
    conn.commit()
    lines.append(f"{seq} {g} {time.time() * 1000:.3f}\n")
    n += 1
with open(OUT, "w") as f:
    f.writelines(lines)
print(f"{n} commits in {time.time() - t0:.1f} s ({n / (time.time() - t0):.0f}/s)")
