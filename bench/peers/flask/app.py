"""The Flask peer of pulse-proxy for the load tests (bench/README.md).

Serves the endpoints of the pulse catalog (pulse.endpoints) the way the
proxy does: GET /rpc/<name>?arg=... for read and search endpoints, POST
/rpc/<name> with a JSON object body for any endpoint, arguments matched by
name and cast to the parameter's type by PostgreSQL, the function's JSON
passed through unchanged.  The caller's tenant comes from an HS256 JWT
(`Authorization: Bearer`, claim `tenant`, `exp` required), checked with
PyJWT, and is applied with SET LOCAL pulse.tenant in the call's transaction,
so the same row-level security applies.  No cache: a plain Flask app.

Run under Gunicorn with sync workers (bench/peers/flask/run.sh): one
PostgreSQL connection per worker process, opened on first use.

Environment: BENCH_PG_DSN (libpq connection string), PULSE_JWT_SECRET.
"""
import json
import os

import jwt
import psycopg2
from flask import Flask, Response, request
from psycopg2 import sql

DSN = os.environ["BENCH_PG_DSN"]
SECRET = os.environ["PULSE_JWT_SECRET"]
CATALOG = """
SELECT name, schema, function, arg_names, arg_types, result, class
  FROM pulse.endpoints
"""

app = Flask(__name__)
_conn = None
_endpoints = {}


def problem(status, title, detail=None):
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def connection():
    """The worker's connection, (re)opened and the catalog (re)loaded as needed."""
    global _conn, _endpoints
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(DSN, application_name="bench-flask")
        with _conn.cursor() as cur:
            cur.execute(CATALOG)
            _endpoints = {r[0]: r for r in cur.fetchall()}
        _conn.commit()
    return _conn


def tenant_of(header):
    if not header or not header.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"],
                            options={"require": ["exp"]})
    except jwt.PyJWTError:
        return None
    tenant = claims.get("tenant")
    return None if tenant is None or isinstance(tenant, (dict, list)) else str(tenant)


def as_text(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


@app.route("/health")
def health():
    return Response('{"status":"ok"}', mimetype="application/json")


@app.route("/rpc/<name>", methods=["GET", "POST"])
def rpc(name):
    tenant = tenant_of(request.headers.get("Authorization"))
    if tenant is None:
        return problem(401, "Unauthorized", "missing or invalid bearer token")
    try:
        conn = connection()
    except psycopg2.Error as e:
        return problem(503, "Service Unavailable", str(e).strip())
    ep = _endpoints.get(name)
    if ep is None:
        return problem(404, "Not Found", "no endpoint %s" % name)
    _, schema, function, arg_names, arg_types, result, cls = ep
    if request.method == "GET":
        if cls not in ("read", "search"):
            return problem(405, "Method Not Allowed", "use POST for %s endpoints" % cls)
        args = request.args.to_dict()
    else:
        args = request.get_json(silent=True)
        if not isinstance(args, dict):
            return problem(400, "Bad Request", "the body must be a JSON object")
    types = dict(zip(arg_names, arg_types))
    unknown = [a for a in args if a not in types]
    if unknown:
        return problem(400, "Bad Request", "unknown argument %s" % unknown[0])
    names = sorted(args)
    call = sql.SQL("{}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(function),
        sql.SQL(", ").join(sql.SQL("{} => %s::" + types[a]).format(sql.Identifier(a))
                           for a in names))
    if result == "rows":
        query = sql.SQL("SELECT coalesce(json_agg(r), '[]')::text FROM {} AS r").format(call)
    else:
        query = sql.SQL("SELECT ({})::text").format(call)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('pulse.tenant', %s, true)", (tenant,))
            cur.execute(query, [as_text(args[a]) for a in names])
            body = cur.fetchone()[0]
        conn.commit()
    except psycopg2.Error as e:
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
        code = e.pgcode or ""
        if code.startswith("22") or code in ("42883", "42P02"):
            return problem(400, "Bad Request", (e.pgerror or str(e)).strip())
        if code == "42501":
            return problem(403, "Forbidden", (e.pgerror or str(e)).strip())
        return problem(503 if not code else 500, "Database Error", (e.pgerror or str(e)).strip())
    return Response("null" if body is None else body, mimetype="application/json")
