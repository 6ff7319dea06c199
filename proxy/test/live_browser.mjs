// Drives Debian's chromium (headless, through playwright-core from proxy/test/npm) for proxy/test/live_browser.sh:
//   node live_browser.mjs <page url> <profile dir> <write cmd> <restart cmd> <other tenant cmd> <screenshot.png>
//                         <short token cmd>
// The page (served from another origin than the API) opens an EventSource on a live endpoint, records every event and
// every (re)open, and shows the last result in its DOM (#result); a second EventSource with a token that expires soon
// shows its state in #expiring (its token, from `<short token cmd>` run right before the page opens, in the URL's
// fragment). The script waits for the first result, runs `<write cmd> 77` (a psql UPDATE), waits
// for the pushed result in the DOM and takes a screenshot, runs `<other tenant cmd>` (another tenant's writes, one of
// them to a row of the same group) and watches 1.5 s for a result (none must come), waits for the short token to
// expire (the stream must end with an `error` event carrying problem+json), runs `<restart cmd>` (the proxy stopped
// and started again), waits for the EventSource to reconnect by itself and watches 2 s for a repeated result (it must
// not come: the reconnect sends Last-Event-ID), then runs `<write cmd> 78` and waits for that result. Prints one JSON
// object with what it saw at each step.
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const require = createRequire(new URL("./npm/", import.meta.url));
const { chromium } = require("playwright-core");
const [pageUrl, profile, writeCmd, restartCmd, otherCmd, shot, shortTokenCmd] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  const page = await context.newPage();
  await page.goto(pageUrl + "#" + execFileSync(shortTokenCmd).toString().trim());
  const state = () =>
    page.evaluate(() => ({
      events: window.events, opens: window.opens, errors: window.errors, expired: window.expired,
      dom: document.getElementById("result").textContent, expiring: document.getElementById("expiring").textContent,
    }));
  const waitFor = async (pred, ms) => {
    const end = Date.now() + ms;
    for (;;) {
      const s = await state();
      if (pred(s) || Date.now() > end) return s;
      await sleep(50);
    }
  };
  const hasV = (v) => (s) => s.events.some((e) => JSON.parse(e.data).some((r) => r.v === v));
  let s = await waitFor((s) => s.events.length >= 1, 10000);
  out.first = s.events[0] || null;
  out.origin = await page.evaluate(() => location.origin);
  const t0 = Date.now();
  execFileSync(writeCmd, ["77"]);
  s = await waitFor(hasV(77), 10000);
  out.after_write = { events: s.events.length, saw77: hasV(77)(s), ms: Date.now() - t0, last: s.events.at(-1), dom: s.dom };
  await page.screenshot({ path: shot });
  const beforeOther = s.events.length;
  execFileSync(otherCmd);
  await sleep(1500);
  s = await state();
  out.other_tenant = { events: s.events.length, before: beforeOther, dom: s.dom, all: s.events.map((e) => e.data).join("") };
  s = await waitFor((s) => s.expired !== null, 15000);
  out.expiry = { expired: s.expired, expiring: s.expiring };
  const before = s.events.length;
  execFileSync(restartCmd);
  s = await waitFor((s) => s.opens >= 2, 20000);
  out.reconnected = { opens: s.opens, errors: s.errors };
  await sleep(2000);
  s = await state();
  out.after_reconnect = { events: s.events.length, before, last_id_before: s.events[before - 1]?.id };
  execFileSync(writeCmd, ["78"]);
  s = await waitFor(hasV(78), 10000);
  out.after_second_write = { events: s.events.length, saw78: hasV(78)(s), last: s.events.at(-1) };
} catch (e) {
  out.error = String(e);
} finally {
  await context.close();
}
console.log(JSON.stringify(out));
