#!/usr/bin/env python3
"""tokens.py SECRET TENANTS [TTL_SECONDS]: prints "tenant<TAB>jwt" for tenants 1..TENANTS.

Each token is an HS256 JWT with the claims {"tenant": k, "exp": now + TTL}
(default one day), the same for pulse-proxy and the peers: the load
scripts send the token of the tenant they act for.  Standard library only."""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


secret = sys.argv[1].encode()
tenants = int(sys.argv[2])
exp = int(time.time()) + (int(sys.argv[3]) if len(sys.argv) > 3 else 86400)
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
for k in range(1, tenants + 1):
    body = b64(json.dumps({"tenant": k, "exp": exp}, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    print(f"{k}\t{head}.{body}.{sig}")
