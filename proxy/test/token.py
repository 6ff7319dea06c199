#!/usr/bin/env python3
"""token.py SECRET CLAIMS_JSON [ALG]: prints an HS256 (or unsigned 'none', or fake RS256) JWT.

A test helper for proxy/test/e2e.sh; standard library only."""
import base64, hashlib, hmac, json, sys

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

secret, claims = sys.argv[1], json.loads(sys.argv[2])
alg = sys.argv[3] if len(sys.argv) > 3 else "HS256"
head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
body = b64(json.dumps(claims).encode())
signing = f"{head}.{body}".encode()
if alg == "none":
    sig = ""
else:  # RS256 tokens are "signed" with HMAC too: the proxy must refuse the alg before checking
    sig = b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
