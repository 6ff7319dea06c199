'use strict';
// The Express peer of pulse-proxy for the load tests (bench/README.md).
//
// Serves the endpoints of the pulse catalog (pulse.endpoints) as the proxy
// does: GET /rpc/<name>?arg=... for read and search endpoints, POST
// /rpc/<name> with a JSON object body for any endpoint; arguments matched by
// name and cast by PostgreSQL to the parameter's type; the function's JSON
// passed through unchanged.  Tenant from an HS256 JWT (claim `tenant`, `exp`
// required), applied with set_config('pulse.tenant', ..., true) in the
// call's transaction, so the same row-level security applies.
//
// Cache-aside in Redis (ioredis) for read and search endpoints that have a
// ttl: the key holds the tenant, the endpoint, the arguments and the
// generations of the endpoint's tags, as the proxy's does, so a write
// invalidates in O(1).  Generations are kept in memory from LISTEN
// pulse_invalidate, and after a write from pulse.tag_generations read on
// the write's connection right after its COMMIT (read-your-writes in this
// process; pulse bumps a transaction's tags at pre-commit, so a read inside
// the transaction would still see the old generations).  CACHE=off
// disables the cache; CACHE=ttl ignores the tags (TTL expiry only).
//
// Runs WORKERS processes (node:cluster, default: cores), each with a pg
// pool of PG_POOL connections (default 10).
//
// Environment: PORT, BENCH_PG_DSN (libpq key=value string), REDIS_URL,
// PULSE_JWT_SECRET, CACHE (tags|ttl|off), WORKERS, PG_POOL.
const cluster = require('node:cluster');
const os = require('node:os');
const crypto = require('node:crypto');

const WORKERS = parseInt(process.env.WORKERS || String(os.cpus().length), 10);

if (cluster.isPrimary && WORKERS > 1) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let stopping = false;
  cluster.on('exit', (w, code) => {
    if (!stopping) console.error(`express peer: worker ${w.process.pid} exited (${code})`);
  });
  const stop = () => {
    stopping = true;
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return;
}

const express = require('express');
const { Pool, Client } = require('pg');
const Redis = require('ioredis');

const SECRET = process.env.PULSE_JWT_SECRET;
const CACHE = process.env.CACHE || 'tags';
const PORT = parseInt(process.env.PORT, 10);
const pgConfig = parseDsn(process.env.BENCH_PG_DSN || '');

// "host=... port=... dbname=... user=..." -> pg's config object
function parseDsn(dsn) {
  const c = {};
  for (const part of dsn.trim().split(/\s+/)) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i);
    const v = part.slice(i + 1);
    if (k === 'dbname') c.database = v;
    else if (k === 'port') c.port = parseInt(v, 10);
    else if (k === 'host' || k === 'user' || k === 'password') c[k] = v;
  }
  c.application_name = 'bench-express';
  return c;
}

const pool = new Pool({ ...pgConfig, max: parseInt(process.env.PG_POOL || '10', 10) });
pool.on('error', (e) => console.error('express peer: idle client error', e.message));

let redis = null;
if (CACHE !== 'off') {
  redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379', {
    commandTimeout: 100, maxRetriesPerRequest: 1, enableOfflineQueue: false,
  });
  redis.on('error', () => {}); // Redis down: slower, not failing
}

// --- catalog and tag generations -------------------------------------------
let endpoints = new Map();
const generations = new Map();

function quoteIdent(s) { return '"' + String(s).replace(/"/g, '""') + '"'; }

async function loadCatalog() {
  // A keyed tag template ("<tag>:<col>={arg}") is read as its table's tag: cache-aside here invalidates by
  // table, as applications that keep generations themselves do (pulse-proxy keeps keyed tags exactly).
  const r = await pool.query(`SELECT name, schema, function, arg_names, arg_types, result, class,
                                     extract(epoch FROM ttl)::int AS ttl,
                                     ARRAY(SELECT DISTINCT regexp_replace(t, ':[^:={}]+=\\{[^{}]*\\}$', '')
                                             FROM unnest(tags) AS t) AS tags
                                FROM pulse.endpoints`);
  const m = new Map();
  const tags = new Set();
  for (const e of r.rows) {
    e.types = new Map(e.arg_names.map((n, i) => [n, e.arg_types[i]]));
    m.set(e.name, e);
    e.tags.forEach((t) => tags.add(t));
  }
  endpoints = m;
  if (tags.size) {
    const g = await pool.query('SELECT unnest($1::text[]) AS tag, unnest(pulse.tag_generations($1::text[])) AS gen', [[...tags]]);
    for (const row of g.rows) setGeneration(row.tag, Number(row.gen));
  }
}

function setGeneration(tag, gen) {
  if (!(generations.get(tag) >= gen)) generations.set(tag, gen);
}

async function listen() {
  const c = new Client(pgConfig);
  c.on('error', () => setTimeout(listen, 1000));
  c.on('notification', (n) => {
    if (n.channel === 'pulse_invalidate') {
      // only the tags an endpoint depends on (loadCatalog): every keyed tag a write bumps also comes here, and
      // remembering them all made the map, and the read of all its generations after each write, grow without end
      const i = n.payload.lastIndexOf(':');
      const tag = i > 0 ? n.payload.slice(0, i) : null;
      if (tag !== null && generations.has(tag)) setGeneration(tag, Number(n.payload.slice(i + 1)));
    } else if (n.channel === 'pulse_reload') {
      loadCatalog().catch((e) => console.error('express peer: reload', e.message));
    }
  });
  await c.connect();
  await c.query('LISTEN pulse_invalidate');
  await c.query('LISTEN pulse_reload');
  await loadCatalog(); // resync after every (re)connect
}

// --- JWT (HS256) ------------------------------------------------------------
function b64url(buf) { return buf.toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'); }

function tenantOf(header) {
  if (!header || !header.startsWith('Bearer ')) return null;
  const parts = header.slice(7).split('.');
  if (parts.length !== 3) return null;
  try {
    const head = JSON.parse(Buffer.from(parts[0], 'base64url'));
    if (head.alg !== 'HS256') return null;
    const sig = b64url(crypto.createHmac('sha256', SECRET).update(parts[0] + '.' + parts[1]).digest());
    if (sig.length !== parts[2].length || !crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(parts[2]))) return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
    if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000) return null;
    if (claims.tenant === undefined || claims.tenant === null || typeof claims.tenant === 'object') return null;
    return String(claims.tenant);
  } catch (e) {
    return null;
  }
}

// --- requests -----------------------------------------------------------------
function problem(res, status, title, detail) {
  res.status(status).type('application/problem+json')
    .send(JSON.stringify({ type: 'about:blank', title, status, detail }));
}

function asText(v) {
  if (v === null || v === undefined || typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

async function call(ep, tenant, args) {
  const names = Object.keys(args).sort();
  const params = names.map((n) => asText(args[n]));
  const list = names.map((n, i) => `${quoteIdent(n)} => $${i + 1}::${ep.types.get(n)}`).join(', ');
  const fn = `${quoteIdent(ep.schema)}.${quoteIdent(ep.function)}(${list})`;
  const text = ep.result === 'rows'
    ? `SELECT coalesce(json_agg(r), '[]')::text AS body FROM ${fn} AS r`
    : `SELECT (${fn})::text AS body`;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT set_config('pulse.tenant', $1, true)", [tenant]);
    const r = await client.query(text, params);
    await client.query('COMMIT');
    if (ep.class === 'write' || ep.class === 'batch') await readGenerations(client);
    return r.rows[0].body;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

// After a write's COMMIT: the generations of every known tag, so that the
// next read through this process keys on the write's bumps.  A failure
// only delays that to the NOTIFY (the write itself is committed).
async function readGenerations(client) {
  const tags = [...generations.keys()];
  if (!tags.length) return;
  try {
    const g = await client.query('SELECT pulse.tag_generations($1::text[]) AS g', [tags]);
    g.rows[0].g.forEach((gen, i) => setGeneration(tags[i], Number(gen)));
  } catch (e) { /* LISTEN pulse_invalidate catches up */ }
}

async function handle(req, res, args) {
  const tenant = tenantOf(req.get('authorization'));
  if (tenant === null) return problem(res, 401, 'Unauthorized', 'missing or invalid bearer token');
  const ep = endpoints.get(req.params.name);
  if (!ep) return problem(res, 404, 'Not Found', `no endpoint ${req.params.name}`);
  if (req.method === 'GET' && ep.class !== 'read' && ep.class !== 'search') {
    return problem(res, 405, 'Method Not Allowed', `use POST for ${ep.class} endpoints`);
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    return problem(res, 400, 'Bad Request', 'the body must be a JSON object');
  }
  for (const k of Object.keys(args)) {
    if (!ep.types.has(k)) return problem(res, 400, 'Bad Request', `unknown argument ${k}`);
  }
  const cacheable = redis && (ep.class === 'read' || ep.class === 'search') && ep.ttl > 0;
  let key = null;
  if (cacheable) {
    const gens = CACHE === 'ttl' ? '' : ep.tags.map((t) => generations.get(t) || 0).join(',');
    const canon = JSON.stringify(Object.keys(args).sort().map((k) => [k, asText(args[k])]));
    key = 'peer:' + crypto.createHash('sha1').update(`${tenant}\0${ep.name}\0${gens}\0${canon}`).digest('base64');
    try {
      const hit = await redis.get(key);
      if (hit !== null) {
        res.set('X-Cache', 'hit').type('application/json').send(hit);
        return;
      }
    } catch (e) { /* Redis down or slow: go to the database */ }
  }
  let body;
  try {
    body = await call(ep, tenant, args);
  } catch (e) {
    const code = e.code || '';
    if (code.startsWith('22') || code === '42883' || code === '42P02') return problem(res, 400, 'Bad Request', e.message);
    if (code === '42501') return problem(res, 403, 'Forbidden', e.message);
    return problem(res, code ? 500 : 503, 'Database Error', e.message);
  }
  body = body === null ? 'null' : body;
  if (key) redis.set(key, body, 'EX', ep.ttl).catch(() => {});
  if (key) res.set('X-Cache', 'miss');
  res.type('application/json').send(body);
}

const app = express();
app.disable('x-powered-by');
app.disable('etag');
app.get('/health', (req, res) => res.type('application/json').send('{"status":"ok"}'));
app.get('/rpc/:name', (req, res) => { handle(req, res, { ...req.query }); });
app.post('/rpc/:name', express.json({ limit: '64kb' }), (req, res) => { handle(req, res, req.body); });
app.use((err, req, res, next) => problem(res, 400, 'Bad Request', err.message)); // malformed JSON

listen().then(() => {
  const server = app.listen(PORT, '127.0.0.1');
  server.keepAliveTimeout = 65000;
  const stop = () => {
    server.close();
    pool.end().catch(() => {});
    if (redis) redis.disconnect();
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}).catch((e) => {
  console.error('express peer: cannot start:', e.message);
  process.exit(1);
});
