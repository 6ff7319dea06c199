#!/usr/bin/env python3
"""token.py SECRET CLAIMS_JSON [ALG]: prints an HS256 (or unsigned 'none', or fake RS256) JWT.

A test helper for proxy/test/e2e.sh and hostile.py (which imports mint); standard library only."""
import base64, hashlib, hmac, json, sys

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def mint(secret: str, claims_json: str, alg: str = "HS256") -> str:
    """claims_json is sent as given (so that non-canonical JSON numbers such as 7.0 survive)"""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(claims_json.encode())
    signing = f"{head}.{body}".encode()
    if alg == "none":
        sig = ""
    else:  # RS256 and HS512 tokens are "signed" with HMAC-SHA256 too: the proxy must refuse the alg before checking
        sig = b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"

if __name__ == "__main__":
    print(mint(sys.argv[1], json.dumps(json.loads(sys.argv[2])), sys.argv[3] if len(sys.argv) > 3 else "HS256"))
