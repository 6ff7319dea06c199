#!/usr/bin/env python3
"""hostile.py: the oracle of proxy/test/http_hostile.sh (standard library, curl and nghttp only).

  hostile.py --port P --secret S --corpus FILE --tmp DIR --pid PID [--fuzz-seconds N] [--seed N]

1. The corpus (FILE, format in its header): each request is sent byte-exact over a
   fresh HTTP/1 connection, and every response is checked: the expected statuses in
   order; every status >= 400 is application/problem+json with a JSON body whose
   "status" is the same; "close" cases: no further response, and the connection is
   closed by the proxy; "keep" cases: it stays open.  Cases flagged h2 are sent again
   over HTTP/2 (h2c prior knowledge, curl --http2-prior-knowledge --path-as-is).
2. h2c: the Upgrade path (curl --http2, nghttp -u) and prior knowledge (nghttp).
3. ETags: the gzip and identity representations of a cached answer have different
   strong ETags, and If-None-Match gives a 304 for the representation the client
   would get, over HTTP/1 and HTTP/2.
4. Fuzz: seeded mutations of valid requests (the seed is printed; --seed replays),
   for --fuzz-seconds.  The proxy must stay alive, every status >= 400 must be a
   problem document, and /metrics or /ready content may only answer a stream whose
   request line asks for exactly /metrics or /ready.  A failing case is shrunk, and
   the minimal stream written to DIR/fuzz-failure.bin and printed.

Prints TAP lines "ok N - ..." / "not ok N - ..."; writes "N PASSED FAILED" to
DIR/hostile.counts for the calling script; exits 1 when a check failed.
"""
import os, sys

# this directory holds token.py, which would shadow the standard library's token module (tokenize imports it)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse, codecs, importlib.util, json, random, re, socket, subprocess, time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

# proxy/test/token.py (loaded by path: "token" is also a module of the standard library)
_spec = importlib.util.spec_from_file_location("pulse_test_token", os.path.join(os.path.dirname(os.path.abspath(__file__)), "token.py"))
_token = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_token)
mint = _token.mint

ARGS = None
N = PASSED = FAILED = 0


def tap(ok, desc, why=""):
    global N, PASSED, FAILED
    N += 1
    if ok:
        PASSED += 1
        print(f"ok {N} - {desc}")
    else:
        FAILED += 1
        print(f"not ok {N} - {desc}")
        if why:
            for line in str(why).splitlines()[:12]:
                print(f"#   {line}")
    sys.stdout.flush()


# --- HTTP/1 over a raw socket ------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.header('content-type')} {self.body[:120]!r}>"


def parse_responses(data, head_request=False):
    """splits the bytes a server sent into responses (1xx skipped); returns (responses, leftover bytes)"""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        lines = data[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            return out, data
        status = int(m.group(1))
        headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
        length = 0
        for k, v in headers:
            if k.lower() == "content-length":
                length = int(v)
        if head_request or status == 304 or 100 <= status < 200:
            length = 0
        if len(data) < end + 4 + length:
            return out, data
        body = data[end + 4:end + 4 + length]
        data = data[end + 4 + length:]
        if not 100 <= status < 200:
            out.append(Response(status, headers, body))


def exchange(payload, pieces=1, wait_close=2.0, idle=0.4, head_request=False):
    """sends `payload` (in `pieces` writes), reads until the server closes or is idle; returns (responses, closed)"""
    try:
        s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=5)
    except OSError as e:
        if not alive():
            tap(False, "the proxy is alive", f"it died: {e}")
            open(os.path.join(ARGS.tmp, "hostile.counts"), "w").write(f"{N} {PASSED} {FAILED}\n")
            sys.exit(1)
        raise
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data, closed = b"", False
    try:
        if pieces <= 1:
            s.sendall(payload)
        else:
            step = max(1, len(payload) // pieces)
            for i in range(0, len(payload), step):
                s.sendall(payload[i:i + step])
                time.sleep(0.002)
    except OSError:
        pass
    deadline = time.time() + wait_close
    s.settimeout(idle)
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if parse_responses(data, head_request)[0]:
                break  # answered, and the connection is still open
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    s.close()
    return parse_responses(data, head_request)[0], closed


def problem_ok(r, head_request=False):
    """None when a response of status >= 400 is a proper problem document, else why not"""
    if r.status < 400:
        return None
    ct = r.header("content-type") or ""
    if not ct.startswith("application/problem+json"):
        return f"status {r.status} with Content-Type {ct!r}: {r.body[:200]!r}"
    if head_request:
        return None
    try:
        d = json.loads(r.body)
    except ValueError:
        return f"status {r.status}: body is not JSON: {r.body[:200]!r}"
    if d.get("status") != r.status or not d.get("title") or not d.get("request_id"):
        return f"status {r.status}: problem document {d!r}"
    return None


# --- the corpus ---------------------------------------------------------------------------------------------------

def tokens(secret):
    now = int(time.time())
    exp = now + 3600

    def c(tenant_json, extra=""):
        return '{"tenant": %s, "exp": %d%s}' % (tenant_json, exp, extra)

    t = {
        "t1": mint(secret, c("1")), "t2": mint(secret, c('"2"')), "t7": mint(secret, c("7")),
        "str7": mint(secret, c('"7"')), "acme": mint(secret, c('"acme"')), "json_neg0": mint(secret, c("-0")),
        "uuid": mint(secret, c('"550e8400-e29b-41d4-a716-446655440000"')),
        "none": mint(secret, c("1"), "none"), "hs512": mint(secret, c("1"), "HS512"), "rs256": mint(secret, c("1"), "RS256"),
        "wrong_secret": mint("not-" + secret, c("1")),
        "expired": mint(secret, '{"tenant": 1, "exp": %d}' % (now - 10)),
        "nbf_future": mint(secret, c("1", ', "nbf": %d' % (now + 600))),
        "no_exp": mint(secret, '{"tenant": 1}'),
        "no_tenant": mint(secret, '{"exp": %d}' % exp),
        "tenant_empty": mint(secret, c('""')), "tenant_array": mint(secret, c("[1]")),
        "tenant_object": mint(secret, c('{"id": 1}')), "tenant_true": mint(secret, c("true")),
        "tenant_null": mint(secret, c("null")), "tenant_long": mint(secret, c('"%s"' % ("x" * 65))),
        "s07": mint(secret, c('"07"')), "s_sp8": mint(secret, c('" 8"')), "s_8sp": mint(secret, c('"8 "')),
        "s_plus8": mint(secret, c('"+8"')), "s_neg0": mint(secret, c('"-0"')), "s_007": mint(secret, c('"007"')),
        "s_7.0": mint(secret, c('"7.0"')), "s_7e0": mint(secret, c('"7e0"')), "s_0x7": mint(secret, c('"0x7"')),
        "s_tab7": mint(secret, c('"\\t7"')), "s_1_000": mint(secret, c('"1_000"')),
        "s_huge": mint(secret, c('"123456789012345678901234567890"')),
        "j_7.0": mint(secret, c("7.0")), "j_7e0": mint(secret, c("7e0")), "j_1e30": mint(secret, c("1e30")),
        "j_huge": mint(secret, c("123456789012345678901234567890")),
        "huge": "a" * 6000 + "." + "b" * 100 + ".c",
        "garbage": "garbage.token.here",
    }
    return t


def expand(text, toks):
    """corpus escapes (Python's: \\r \\n \\xNN ...) and placeholders {tok:NAME} {rep:N:TEXT} {bytes:N:C}"""
    def rep(m):
        kind, rest = m.group(1), m.group(2)
        if kind == "tok":
            return toks[rest]
        n, _, what = rest.partition(":")
        return what * int(n)
    prev = None
    while prev != text:
        prev = text
        text = re.sub(r"\{(tok|rep|bytes):([^{}]*)\}", rep, text)
    return codecs.decode(text, "unicode_escape").encode("latin-1")


def load_corpus(path, toks):
    cases = []
    for lineno, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        head, sep, req = line.partition(" | ")
        parts = head.split(None, 2)
        if not sep or len(parts) != 3:
            raise SystemExit(f"{path}:{lineno}: malformed case")
        statuses = [int(x) for x in parts[0].split(",")]
        flags = parts[1].split(",")
        cases.append({"line": lineno, "statuses": statuses, "flags": flags, "name": parts[2], "raw": req,
                      "payload": expand(req, toks)})
    return cases


def h1_case(case):
    payload = case["payload"]
    head_req = payload.startswith(b"HEAD ")
    pieces = min(len(payload), 200) if "trickle" in case["flags"] else 1
    responses, closed = exchange(payload, pieces=pieces, head_request=head_req)
    got = [r.status for r in responses]
    why = []
    if got != case["statuses"]:
        why.append(f"statuses {got}, want {case['statuses']}: {responses!r}")
    for r in responses:
        p = problem_ok(r, head_req)
        if p:
            why.append(p)
        if b"# TYPE pulse_" in r.body or b'"postgresql"' in r.body:
            if not re.match(rb"(GET|HEAD) /(metrics|ready)[ ?]", payload):
                why.append(f"/metrics or /ready content answered: {r.body[:80]!r}")
    if "close" in case["flags"] and not closed:
        why.append("the connection was not closed")
    if "keep" in case["flags"] and closed:
        why.append("the connection was closed")
    flags = ",".join(f for f in case["flags"] if f not in ("keep", "close", "any")) or "-"
    conn = "close" if "close" in case["flags"] else "keep-alive" if "keep" in case["flags"] else ""
    tap(not why, f"HTTP/1 {case['name']}: {','.join(map(str, case['statuses']))} {conn}".rstrip()
        + (f" ({flags})" if flags != "-" else ""), "\n".join(why) + f"\n(corpus line {case['line']})")


def curl_h2(method, path, headers, body=None, extra=()):
    """one request over h2c with prior knowledge; returns (status, headers dict (lower-case, last wins), body, version)"""
    hfile = os.path.join(ARGS.tmp, "h2.headers")
    bfile = os.path.join(ARGS.tmp, "h2.body")
    cmd = ["curl", "-s", "--http2-prior-knowledge", "--path-as-is", "-o", bfile, "-D", hfile,
           "-w", "%{http_code} %{http_version}", "-X", method, "--max-time", "10", "-H", "User-Agent:", "-H", "Accept:"]
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    cmd += list(extra) + [f"http://127.0.0.1:{ARGS.port}{path}"]
    p = subprocess.run(cmd, input=body, capture_output=True)
    out = p.stdout.decode().split()
    hdrs = {}
    try:
        for line in open(hfile, encoding="latin-1"):
            if ":" in line and not line.startswith("HTTP/"):
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        data = open(bfile, "rb").read()
    except OSError:
        data = b""
    return (int(out[0]) if out else 0), hdrs, data, (out[1] if len(out) > 1 else "")


def h2_case(case):
    """the HTTP/1 request text of the case sent over HTTP/2 (method, path, headers but Host, body)"""
    want = case["statuses"][0]
    for f in case["flags"]:
        if f.startswith("h2="):
            want = int(f[3:])
    head, _, body = case["payload"].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x and not x.lower().startswith("host:")]
    status, hdrs, data, version = curl_h2(method, path, headers, body if body else None)
    why = []
    if version != "2":
        why.append(f"HTTP version {version}")
    if status != want:
        why.append(f"status {status}, want {want}: {data[:200]!r}")
    p = problem_ok(Response(status, list(hdrs.items()), data), method == "HEAD")
    if p:
        why.append(p)
    if b"# TYPE pulse_" in data and path.split("?")[0] != "/metrics":
        why.append("/metrics content answered")
    tap(not why, f"HTTP/2 {case['name']}: {want}", "\n".join(why) + f"\n(corpus line {case['line']})")


# --- h2c and ETags ------------------------------------------------------------------------------------------------

def h2c_checks(toks):
    p = subprocess.run(["curl", "-s", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                        f"http://127.0.0.1:{ARGS.port}/health"], capture_output=True, text=True)
    tap(p.stdout == "200 2", "h2c by Upgrade (curl --http2): 200 over HTTP/2", p.stdout + p.stderr)
    p = subprocess.run(["nghttp", "-u", "-s", f"http://127.0.0.1:{ARGS.port}/rpc/whoami",
                        "-H", f"authorization: Bearer {toks['t1']}"], capture_output=True, text=True, timeout=20)
    tap(p.returncode == 0 and "200" in p.stdout, "h2c by Upgrade (nghttp -u): /rpc/whoami answers 200",
        p.stdout[-400:] + p.stderr[-400:])
    p = subprocess.run(["nghttp", "-s", "-v", f"http://127.0.0.1:{ARGS.port}/rpc/..%2fmetrics"],
                       capture_output=True, text=True, timeout=20)
    tap(p.returncode == 0 and ":status: 400" in p.stdout and "# TYPE" not in p.stdout,
        "h2c prior knowledge (nghttp): /rpc/..%2fmetrics is a 400", p.stdout[-600:] + p.stderr[-400:])
    # two requests on one HTTP/2 connection after a refused one: the connection is HTTP/2's, not the guard's
    p = subprocess.run(["nghttp", "-s", f"http://127.0.0.1:{ARGS.port}/health", f"http://127.0.0.1:{ARGS.port}/ready"],
                       capture_output=True, text=True, timeout=20)
    tap(p.returncode == 0, "h2c prior knowledge (nghttp): two streams on one connection", p.stdout[-400:] + p.stderr[-400:])


def etag_checks(toks):
    path = "/rpc/events_page?page_size=40&kind=view"
    auth = f"Authorization: Bearer {toks['t1']}\r\n"

    def get(extra=""):
        rs, _ = exchange((f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n").encode())
        return rs[0] if rs else Response(0, [], b"")

    get()
    ident = get()
    gz = get("Accept-Encoding: gzip\r\n")
    e_id, e_gz = ident.header("etag"), gz.header("etag")
    tap(ident.status == 200 and gz.status == 200 and gz.header("content-encoding") == "gzip" and e_id and e_gz
        and e_id != e_gz and e_id.startswith('"') and e_gz.startswith('"') and gz.header("vary") == "Accept-Encoding",
        f"ETag: identity {e_id} and gzip {e_gz} differ, both strong", f"{ident!r} {gz!r}")
    r = get(f"If-None-Match: {e_gz}\r\nAccept-Encoding: gzip\r\n")
    tap(r.status == 304 and r.header("etag") == e_gz, "If-None-Match with the gzip ETag, gzip accepted: 304", repr(r))
    r = get(f"If-None-Match: {e_id}\r\n")
    tap(r.status == 304 and r.header("etag") == e_id, "If-None-Match with the identity ETag, no gzip: 304", repr(r))
    r = get(f"If-None-Match: {e_id}\r\nAccept-Encoding: gzip\r\n")
    tap(r.status == 200 and r.header("etag") == e_gz and r.header("content-encoding") == "gzip",
        "If-None-Match with the identity ETag, gzip accepted: 200 with the gzip representation", repr(r))
    r = get(f"If-None-Match: {e_gz}\r\n")
    tap(r.status == 200 and r.header("etag") == e_id and r.header("content-encoding") is None,
        "If-None-Match with the gzip ETag, no gzip: 200 with the identity representation", repr(r))
    r = get(f"If-None-Match: W/{e_gz}\r\nAccept-Encoding: gzip\r\n")
    tap(r.status == 304, "If-None-Match with the weak form of the gzip ETag: 304 (weak comparison)", repr(r))
    auth_h = [("authorization", f"Bearer {toks['t1']}")]
    s1, h1, _, v1 = curl_h2("GET", path, auth_h)
    s2, h2, _, v2 = curl_h2("GET", path, auth_h + [("accept-encoding", "gzip")])
    s3, h3, _, _ = curl_h2("GET", path, auth_h + [("accept-encoding", "gzip"), ("if-none-match", e_gz)])
    tap(v1 == v2 == "2" and s1 == s2 == 200 and h1.get("etag") == e_id and h2.get("etag") == e_gz and e_id != e_gz and s3 == 304,
        "HTTP/2: the same ETags per representation, and the 304", f"{s1} {h1.get('etag')} {s2} {h2.get('etag')} {s3}")


# --- fuzz ---------------------------------------------------------------------------------------------------------

def fuzz_seeds(toks):
    a1 = f"Authorization: Bearer {toks['t1']}\r\n"
    body = b'{"page_size": 2, "kind": "buy"}'
    return [
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /rpc/whoami HTTP/1.1\r\nHost: x\r\n{a1}\r\n".encode(),
        f"GET /rpc/events_page?page_size=3&kind=view HTTP/1.1\r\nHost: x\r\n{a1}Accept-Encoding: gzip\r\n\r\n".encode(),
        f"POST /rpc/events_page HTTP/1.1\r\nHost: x\r\n{a1}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
        f"POST /rpc/whoami HTTP/1.1\r\nHost: x\r\n{a1}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode(),
        f"GET /rpc/whoami HTTP/1.1\r\nHost: x\r\n{a1}\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    ]


TOKENS_FUZZ = [b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00", b"%", b"%2e", b"%2f", b"..", b"/", b"//", b"\\", b":", b"?",
               b"#", b"\xc0\xae", b"\xff", b"Content-Length: 5\r\n", b"Content-Length: 0\r\n",
               b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n", b"\r\n\r\n", b"GET /metrics HTTP/1.1\r\n",
               b"0\r\n\r\n", b"ffffffff\r\n", b"HTTP/1.0", b"HTTP/2.0", b"/../metrics", b"Expect: 100-continue\r\n"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(data))
        if op == 0 and data:  # flip a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:  # insert a token
            data[pos:pos] = rng.choice(TOKENS_FUZZ)
        elif op == 2 and data:  # delete a range
            data[pos:pos + rng.randint(1, 8)] = b""
        elif op == 3:  # duplicate a line
            lines = bytes(data).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
        elif op == 4 and data:  # change a digit
            digits = [i for i, c in enumerate(data) if 48 <= c <= 57]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
        else:  # change a letter's case
            letters = [i for i, c in enumerate(data) if 97 <= c <= 122 or 65 <= c <= 90]
            if letters:
                data[rng.choice(letters)] ^= 0x20
    return bytes(data)


def fuzz_verdict(stream):
    """None when the proxy's answers to `stream` obey the oracle, else why not"""
    responses, _ = exchange(stream, pieces=1 if len(stream) % 3 else 3, wait_close=1.0, idle=0.25)
    targets = re.findall(rb"(?:^|\r\n)(?:GET|HEAD) (\S+) HTTP/1\.[01]\r\n", stream)
    for r in responses:
        why = problem_ok(r, stream.startswith(b"HEAD "))
        if why:
            return why
        if b"# TYPE pulse_" in r.body and not any(t == b"/metrics" or t.startswith(b"/metrics?") for t in targets):
            return f"/metrics content for targets {targets!r}"
        if b'"postgresql"' in r.body and not any(t == b"/ready" or t.startswith(b"/ready?") for t in targets):
            return f"/ready content for targets {targets!r}"
    if not alive():
        return "the proxy died"
    return None


def shrink(stream, why_fn):
    """removes chunks of the failing stream while it still fails; returns the smallest found"""
    n = max(1, len(stream) // 2)
    while n >= 1:
        i, changed = 0, False
        while i < len(stream):
            cand = stream[:i] + stream[i + n:]
            if cand and why_fn(cand):
                stream, changed = cand, True
            else:
                i += n
        if not changed:
            n //= 2
    return stream


def alive():
    try:
        os.kill(ARGS.pid, 0)
        return True
    except OSError:
        return False


def fuzz(toks):
    """streams are drawn from one seeded generator, in order, and checked 8 at a time on 4 connections at once"""
    seed = ARGS.seed if ARGS.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"# fuzz seed {seed} ({ARGS.fuzz_seconds} s; replay with FUZZ_SEED={seed})")
    sys.stdout.flush()
    rng = random.Random(seed)
    seeds = fuzz_seeds(toks)
    t_end = time.time() + ARGS.fuzz_seconds
    cases = 0
    with ThreadPoolExecutor(4) as pool:
        while time.time() < t_end:
            batch = [mutate(rng, rng.choice(seeds)) for _ in range(8)]
            for k, (stream, why) in enumerate(zip(batch, pool.map(fuzz_verdict, batch))):
                if why:
                    small = shrink(stream, fuzz_verdict) if alive() else stream
                    path = os.path.join(ARGS.tmp, "fuzz-failure.bin")
                    open(path, "wb").write(small)
                    tap(False, f"fuzz (seed {seed}): case {cases + k + 1} breaks the oracle",
                        f"{why}\nstream: {stream!r}\nminimal: {small!r}\n(written to {path}; FUZZ_SEED={seed})")
                    return
            cases += len(batch)
    tap(alive(), f"fuzz (seed {seed}): {cases} mutated requests in {ARGS.fuzz_seconds:g} s: the proxy alive, only problem "
        "documents for errors, no /metrics or /ready content for other paths")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--fuzz-seconds", type=float, default=10)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--only", help="run only the corpus cases whose name matches this regular expression (and the h2c "
                    "and ETag checks when it matches \"h2c\" or \"ETag\")")
    ARGS = ap.parse_args()
    toks = tokens(ARGS.secret)
    for case in load_corpus(ARGS.corpus, toks):
        if ARGS.only and not re.search(ARGS.only, case["name"]):
            continue
        h1_case(case)
        if any(f == "h2" or f.startswith("h2=") for f in case["flags"]):
            h2_case(case)
    if not ARGS.only or re.search(ARGS.only, "h2c"):
        h2c_checks(toks)
    if not ARGS.only or re.search(ARGS.only, "ETag"):
        etag_checks(toks)
    if ARGS.fuzz_seconds > 0:
        fuzz(toks)
    tap(alive(), "the proxy is alive after all of it")
    open(os.path.join(ARGS.tmp, "hostile.counts"), "w").write(f"{N} {PASSED} {FAILED}\n")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
