// bench/live/client.mjs: the clients of bench/live/run.sh (Node, no dependencies).
//
//   node client.mjs MODE URL SECRET OUT
//   MODE: live (STREAMS text/event-stream connections) or poll:<ms> (STREAMS clients each GET their key every <ms>)
//   env:  STREAMS, KEYS, TENANTS, DURATION (seconds to record once every client is connected)
//
// Client i watches group 1 + i % KEYS (tenant 1 + group % TENANTS, its token's). The writer (writer.py) sets one row
// of a group to a sequence number per commit, so a state's newest commit is the largest `v` in it. Each time a client
// sees its group's largest v grow, a line "client group seq t_ms" goes to OUT (t_ms: wall clock of the receipt, the
// same clock as the writer's commit times), and OUT.first has each client's state when recording began; report.py
// joins them. Prints "ready" once every client got its first state,
// then a summary line (JSON) at the end.
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";

const [mode, url, secret, outPath] = process.argv.slice(2);
const STREAMS = +(process.env.STREAMS || 200);
const KEYS = +(process.env.KEYS || 50);
const TENANTS = +(process.env.TENANTS || 4);
const SECONDS = +(process.env.DURATION || 10);
const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const out = fs.createWriteStream(outPath);

const b64 = (b) => Buffer.from(b).toString("base64url");
function token(tenant) {
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify({ tenant, exp: Math.floor(Date.now() / 1000) + 7200 }));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
const tokens = {};
for (let t = 1; t <= TENANTS; t++) tokens[t] = token(t);

let ready = 0, events = 0, requests = 0, errors = 0, skipped = 0, recording = false;
const errorKinds = {}; // what the errors were: "HTTP <status>" or the socket error's code
function error(kind) {
  errors++;
  errorKinds[kind] = (errorKinds[kind] || 0) + 1;
}
function seen(c, body, now) {
  let max = -1;
  try {
    for (const r of JSON.parse(body)) if (r.v > max) max = r.v;
  } catch {
    error("bad JSON");
    return;
  }
  if (!c.first) {
    c.first = true;
    c.max = max;
    if (++ready === STREAMS) start();
    return;
  }
  if (max > c.max) {
    c.max = max;
    if (recording) out.write(`${c.i} ${c.group} ${max} ${now}\n`);
  }
}

function openStream(c) {
  const req = http.request({
    host: u.hostname, port: u.port, agent: false,
    path: `/rpc/lv_group?grp=${c.group}&access_token=${tokens[c.tenant]}`,
    headers: { Accept: "text/event-stream" },
  });
  req.on("response", (res) => {
    if (res.statusCode !== 200) {
      error(`HTTP ${res.statusCode}`);
      console.error(`stream ${c.i}: HTTP ${res.statusCode}`);
      res.resume();
      return;
    }
    res.setEncoding("utf8");
    let buf = "";
    res.on("data", (chunk) => {
      buf += chunk;
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) {
          events++;
          seen(c, data, Date.now());
        }
      }
    });
  });
  req.on("error", (e) => { error(e.code || e.message); console.error(`stream ${c.i}: ${e.message}`); });
  req.end();
}

function poll(c) {
  if (c.inflight) { // the previous poll has not answered yet: a poller waits for it (counted, not sent)
    skipped++;
    return;
  }
  c.inflight = true;
  requests++;
  const req = http.request({
    host: u.hostname, port: u.port, agent,
    path: `/rpc/lv_group?grp=${c.group}`,
    headers: { Authorization: `Bearer ${tokens[c.tenant]}` },
  });
  req.on("response", (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d) => (body += d));
    res.on("end", () => {
      c.inflight = false;
      if (res.statusCode === 200) seen(c, body, Date.now());
      else error(`HTTP ${res.statusCode}`);
    });
  });
  req.on("error", (e) => {
    c.inflight = false;
    error(e.code || e.message);
  });
  req.end();
}

const clients = [];
for (let i = 0; i < STREAMS; i++) {
  const group = 1 + (i % KEYS);
  clients.push({ i, group, tenant: 1 + (group % TENANTS), first: false, max: -1 });
}
const pollMs = mode.startsWith("poll:") ? +mode.slice(5) : 0;
let timers = [];
if (pollMs > 0) {
  clients.forEach((c, i) => {
    setTimeout(() => { poll(c); timers.push(setInterval(() => poll(c), pollMs)); }, (i * pollMs) / STREAMS);
  });
} else {
  let i = 0; // open in batches: a burst of 10,000 connects would overflow the listen backlog
  const batch = () => {
    for (let n = 0; n < 200 && i < STREAMS; n++) openStream(clients[i++]);
    if (i < STREAMS) setTimeout(batch, 20);
  };
  batch();
}

let t0;
function start() {
  fs.writeFileSync(outPath + ".first", clients.map((c) => `${c.i} ${c.group} ${c.max}\n`).join(""));
  recording = true;
  t0 = Date.now();
  events = 0;
  requests = 0;
  skipped = 0;
  errors = 0;
  for (const k in errorKinds) delete errorKinds[k];
  console.log("ready");
  setTimeout(stop, SECONDS * 1000);
}
function stop() {
  recording = false;
  const secs = (Date.now() - t0) / 1000;
  console.log(JSON.stringify({ mode, streams: STREAMS, keys: KEYS, seconds: secs, events, requests, skipped, errors, errorKinds }));
  out.end(() => process.exit(0));
}
setTimeout(() => {
  if (!recording) {
    console.error(`only ${ready} of ${STREAMS} clients got a first state in 120 s`);
    process.exit(1);
  }
}, 120000).unref();
