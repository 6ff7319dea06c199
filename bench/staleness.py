#!/usr/bin/env python3
"""staleness.py [--history FILE] [--keep SECONDS] [--examples FILE] [--ages FILE] [--label TEXT] OPLOG...

Decides which reads of a load step were stale, from the operation logs that
bench/scenarios/mix.lua writes with BENCH_LOG (one file per wrk thread):

    R <id> <version seen> <start>   a read by id, sent at <start>
    W <id> <version> <ack>          an update of row <id> to <version>; its answer,
                                    sent by the server after COMMIT returned,
                                    arrived at <ack>

Times are CLOCK_MONOTONIC microseconds of the machine, the same clock for
every process.  Versions of a row are given out by the UPDATE itself
(version = version + 1 under the row's lock), so they follow the row's
commit order.

A read is stale when some update of its row to a higher version than the one
it saw was acknowledged before the read was sent: the client knew of a newer
committed state and got an older one.  Its age is its start minus the
earliest such acknowledgement.  An update still unanswered when the read
started does not count (the read may legitimately not see it).

--history FILE keeps the updates of earlier steps (a cache can answer a
step's read with a state older than an update of the step before): they are
read from FILE, used, and FILE is rewritten with every update acknowledged
within --keep seconds (default 300; longer than any ttl + grace in the
benchmark) of the newest one.

Prints one line: "reads stale p50_ms p99_ms max_ms updates" (ages of the
stale reads; "-" when there are none).  --examples FILE appends up to five
stale reads of the step, each with the update it missed, for the report
and for debugging: "label id seen start_us newer_version newer_ack_us age_ms".
--ages FILE appends "label age_ms" for every stale read (the report's
percentiles over several steps).
Standard library only.
"""
import bisect
import gzip
import math
import os
import sys


def open_text(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


def parse(paths, reads, writes):
    for path in paths:
        with open_text(path) as f:
            for line in f:
                p = line.split("\t")
                if len(p) != 4:
                    continue  # a line cut by a killed wrk
                kind, rid, ver, t = p[0], int(p[1]), int(p[2]), int(p[3])
                if kind == "R":
                    reads.append((rid, ver, t))
                elif kind == "W":
                    writes.setdefault(rid, {})
                    # the same version twice: keep the earliest answer
                    old = writes[rid].get(ver)
                    writes[rid][ver] = t if old is None else min(old, t)


def pct(sorted_values, p):
    i = max(1, math.ceil(len(sorted_values) * p))
    return sorted_values[i - 1]


def analyse(reads, writes):
    """(stale reads as (id, seen, start, version, ack, age_us)) for reads."""
    index = {}
    for rid, vers in writes.items():
        vs = sorted(vers)
        acks = [vers[v] for v in vs]
        # suffix minimum: the earliest answer among versions >= vs[i]
        for i in range(len(acks) - 2, -1, -1):
            acks[i] = min(acks[i], acks[i + 1])
        index[rid] = (vs, acks)
    stale = []
    for rid, seen, start in reads:
        if rid not in index:
            continue
        vs, acks = index[rid]
        i = bisect.bisect_right(vs, seen)
        if i < len(vs) and acks[i] < start:
            first = min((v for v in vs[i:] if writes[rid][v] == acks[i]))
            stale.append((rid, seen, start, first, acks[i], start - acks[i]))
    return stale


def main(argv):
    history = examples = ages_file = None
    keep = 300.0
    label = "-"
    paths = []
    args = iter(argv)
    for a in args:
        if a == "--history":
            history = next(args)
        elif a == "--keep":
            keep = float(next(args))
        elif a == "--examples":
            examples = next(args)
        elif a == "--ages":
            ages_file = next(args)
        elif a == "--label":
            label = next(args)
        else:
            paths.append(a)
    reads, writes, step_writes = [], {}, {}
    if history and os.path.exists(history):
        parse([history], [], writes)
    parse(paths, reads, step_writes)
    updates = sum(len(v) for v in step_writes.values())
    for rid, vers in step_writes.items():
        for v, t in vers.items():
            old = writes.setdefault(rid, {}).get(v)
            writes[rid][v] = t if old is None else min(old, t)

    stale = analyse(reads, writes)
    ages = sorted(s[5] / 1000.0 for s in stale)
    if ages:
        print("%d %d %.3f %.3f %.3f %d" % (len(reads), len(ages), pct(ages, 0.5), pct(ages, 0.99), ages[-1], updates))
    else:
        print("%d 0 - - - %d" % (len(reads), updates))

    if ages_file and stale:
        with open(ages_file, "a") as f:
            for s in stale:
                f.write("%s\t%.3f\n" % (label, s[5] / 1000.0))

    if examples and stale:
        with open(examples, "a") as f:
            for rid, seen, start, ver, ack, age in sorted(stale, key=lambda s: -s[5])[:5]:
                f.write("%s\t%d\t%d\t%d\t%d\t%d\t%.3f\n" % (label, rid, seen, start, ver, ack, age / 1000.0))

    if history:
        newest = max((t for vers in writes.values() for t in vers.values()), default=0)
        limit = newest - keep * 1e6
        tmp = history + ".tmp"
        with open(tmp, "w") as f:
            for rid in sorted(writes):
                for v, t in sorted(writes[rid].items()):
                    if t >= limit:
                        f.write("W\t%d\t%d\t%d\n" % (rid, v, t))
        os.replace(tmp, history)


if __name__ == "__main__":
    main(sys.argv[1:])
