#!/usr/bin/env python3
"""otlp_receiver.py: a minimal OTLP/HTTP JSON trace receiver for end-to-end tests.

    python3 otlp_receiver.py PORT OUTFILE

Listens on 127.0.0.1:PORT (threaded, HTTP/1.1 keep-alive).  POST /v1/traces
with an application/json ExportTraceServiceRequest (optionally gzip-encoded)
appends one JSON object per span to OUTFILE (one line each, flushed before the
answer, so a test can read the file as soon as the exporter got its 200):

    {"traceId", "spanId", "parentSpanId" ("" for a root span), "name", "kind",
     "startTimeUnixNano", "endTimeUnixNano" (integers), "service" (the
     resource's service.name), "attributes" (a flat dict: key -> string, int,
     float or bool), "status" ({"code": int, "message": str})}

and answers 200 {}.  A body that is not JSON gets 400, another content type
415, any other path or method 404.  Python 3.11 standard library only.
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def any_value(v):
    """Converts an OTLP AnyValue to a plain Python value."""
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])  # int64 is a string in OTLP JSON, but accept numbers too
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return flat_attributes(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def flat_attributes(attrs):
    return {a.get("key", ""): any_value(a.get("value", {})) for a in attrs or []}


def flatten(request):
    """Yields one flat dict per span of an ExportTraceServiceRequest."""
    for rs in request.get("resourceSpans", []) or []:
        resource = flat_attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans", []) or []:
            for span in ss.get("spans", []) or []:
                status = span.get("status") or {}
                yield {
                    "traceId": span.get("traceId", ""),
                    "spanId": span.get("spanId", ""),
                    "parentSpanId": span.get("parentSpanId", ""),
                    "name": span.get("name", ""),
                    "kind": int(span.get("kind", 0)),
                    "startTimeUnixNano": int(span.get("startTimeUnixNano", 0)),
                    "endTimeUnixNano": int(span.get("endTimeUnixNano", 0)),
                    "service": resource.get("service.name"),
                    "attributes": flat_attributes(span.get("attributes")),
                    "status": {"code": int(status.get("code", 0)), "message": status.get("message", "")},
                }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's libcurl expects
    server_version = "otlp-receiver"

    def log_message(self, fmt, *args):  # quiet: the test reads OUTFILE
        pass

    def answer(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_POST(self):
        body = self.read_body()
        if self.path.split("?", 1)[0] != "/v1/traces":
            return self.answer(404, b'{"error":"not found"}')
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            return self.answer(415, b'{"error":"only application/json"}')
        try:
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            spans = list(flatten(json.loads(body)))
        except (ValueError, TypeError, AttributeError, OSError) as e:
            return self.answer(400, json.dumps({"error": str(e)}).encode())
        lines = "".join(json.dumps(s, separators=(",", ":")) + "\n" for s in spans)
        with self.server.out_lock:
            self.server.out.write(lines)
            self.server.out.flush()
        self.answer(200)

    def do_GET(self):
        self.read_body()
        self.answer(404, b'{"error":"not found"}')

    do_PUT = do_DELETE = do_PATCH = do_GET

    def do_HEAD(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    if len(sys.argv) != 3:
        print("usage: otlp_receiver.py PORT OUTFILE", file=sys.stderr)
        return 2
    port, outfile = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.out = open(outfile, "a", encoding="utf-8")
    server.out_lock = threading.Lock()
    print(f"otlp_receiver: listening on 127.0.0.1:{server.server_address[1]}, writing {outfile}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
