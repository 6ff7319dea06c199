#!/usr/bin/env python3
"""Client load of proxy/test/replicas.sh (standard library only).

  replicas_load.py ryw PORT TOKEN N token|none
      N pairs: POST /rpc/add_event, then GET /rpc/event_nc?id=<its id>, with the
      write's Pulse-LSN as Pulse-Min-LSN ("token") or without ("none").  Prints
      one JSON line: pairs, missing (reads that did not see their write),
      on_replica (reads a replica answered), errors (non-200 answers), and the
      first missing pair.
  replicas_load.py where PORT TOKEN PATH N
      N GETs of PATH on one connection; prints "<status> <port>" per answer
      (the "port" member of its body).
  replicas_load.py tick DSN SECONDS INTERVAL
      inserts a row into demo.ticks every INTERVAL seconds for SECONDS on one
      connection (psycopg2: run it with /usr/bin/python3), so that a paused
      replica falls behind at a steady pace.
  replicas_load.py hammer PORT TOKEN PATH SECONDS THREADS
      GET PATH on THREADS keep-alive connections for SECONDS.  Prints one
      JSON line: total, errors (non-200 answers and broken connections, with
      the first few), and the answers by the "port" member of their body.
"""
import http.client
import json
import sys
import threading
import time


def connect(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def ryw(port, token, n, mode):
    c = connect(port)
    auth = {"Authorization": "Bearer " + token}
    out = {"pairs": n, "missing": 0, "on_replica": 0, "errors": 0, "first_missing": None, "first_error": None}
    for i in range(n):
        c.request("POST", "/rpc/add_event", body=json.dumps({"kind": "ryw", "note": "ryw %d" % i}),
                  headers=dict(auth, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        body = r.read()
        lsn = r.getheader("Pulse-LSN")
        if r.status != 200 or not lsn:
            out["errors"] += 1
            out["first_error"] = out["first_error"] or "write %d: %d %s" % (i, r.status, body[:200])
            continue
        eid = json.loads(body)["id"]
        h = dict(auth)
        if mode == "token":
            h["Pulse-Min-LSN"] = lsn
        c.request("GET", "/rpc/event_nc?id=%d" % eid, headers=h)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            out["errors"] += 1
            out["first_error"] = out["first_error"] or "read %d: %d %s" % (i, r.status, body[:200])
            continue
        d = json.loads(body)
        if d["row"] is None:
            out["missing"] += 1
            out["first_missing"] = out["first_missing"] or {"pair": i, "id": eid, "lsn": lsn, "answer": d}
        if d["recovery"]:
            out["on_replica"] += 1
    print(json.dumps(out))


def where(port, token, path, n):
    c = connect(port)
    for _ in range(n):
        c.request("GET", path, headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        body = r.read()
        try:
            port_ = json.loads(body).get("port")
        except ValueError:
            port_ = None
        print(r.status, port_)


def tick(dsn, seconds, interval):
    import psycopg2
    c = psycopg2.connect(dsn)
    c.autocommit = True
    cur = c.cursor()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cur.execute("INSERT INTO demo.ticks DEFAULT VALUES")
        time.sleep(interval)


def hammer(port, token, path, seconds, threads):
    lock = threading.Lock()
    out = {"total": 0, "errors": 0, "first_errors": [], "by_port": {}}
    deadline = time.monotonic() + seconds

    def run():
        c = connect(port)
        while time.monotonic() < deadline:
            err = None
            try:
                c.request("GET", path, headers={"Authorization": "Bearer " + token})
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    err = "%d %s" % (r.status, body[:200])
                else:
                    port_ = str(json.loads(body).get("port"))
            except (OSError, http.client.HTTPException) as e:
                err = repr(e)
                c.close()
                c = connect(port)
            with lock:
                out["total"] += 1
                if err is not None:
                    out["errors"] += 1
                    if len(out["first_errors"]) < 5:
                        out["first_errors"].append(err)
                else:
                    out["by_port"][port_] = out["by_port"].get(port_, 0) + 1

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "ryw":
        ryw(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "where":
        where(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "tick":
        tick(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "hammer":
        hammer(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
