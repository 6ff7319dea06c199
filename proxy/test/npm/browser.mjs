// Drives Debian's chromium (headless, through playwright-core) for
// proxy/test/api_surface.sh. Usage:
//   node browser.mjs <api base> <token> <allowed page url> <other page url> <docs url> <screenshot.png> <profile dir>
// Prints one JSON object: the results of fetch() calls made from pages of an
// allowed and of a disallowed origin (cross-origin: a preflight each), and of
// the /docs page rendered by Redoc (its text, and a screenshot).
import { chromium } from "playwright-core";

const [api, token, allowedPage, otherPage, docsUrl, shot, profile] = process.argv.slice(2);
// a fresh profile directory: playwright passes it as --user-data-dir
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
try {
  const page = await context.newPage();
  // fetch() from the page's origin: GET with a bearer token, and POST with a JSON body
  const calls = async () => page.evaluate(async ({ api, token }) => {
    const one = async (path, init) => {
      try {
        const r = await fetch(api + path, init);
        return { ok: true, status: r.status, body: await r.text(), ratelimit: r.headers.get("RateLimit"),
                 policy: r.headers.get("RateLimit-Policy"), rid: r.headers.get("X-Request-Id"),
                 etag: r.headers.get("ETag"), cache: r.headers.get("Cache-Control") };
      } catch (e) {
        return { ok: false, error: String(e) };
      }
    };
    return {
      get: await one("/rpc/whoami", { headers: { Authorization: "Bearer " + token } }),
      post: await one("/rpc/whoami", { method: "POST", headers: { Authorization: "Bearer " + token,
                                                                  "Content-Type": "application/json" }, body: "{}" }),
      etag: await one("/rpc/event?id=1", { headers: { Authorization: "Bearer " + token } }),
      noauth: await one("/rpc/whoami", {}),
    };
  }, { api, token });
  await page.goto(allowedPage);
  out.allowed = { origin: await page.evaluate(() => location.origin), ...(await calls()) };
  await page.goto(otherPage);
  out.other = { origin: await page.evaluate(() => location.origin), ...(await calls()) };

  // /docs: Redoc renders /openapi.json; wait for an operation of the catalog to show
  const docs = await context.newPage();
  const errors = [];
  docs.on("pageerror", (e) => errors.push(String(e)));
  await docs.goto(docsUrl);
  await docs.waitForSelector("text=events_page", { timeout: 60000 });
  await docs.setViewportSize({ width: 1280, height: 900 });
  await docs.screenshot({ path: shot });
  out.docs = { title: await docs.title(), text: await docs.evaluate(() => document.body.innerText), errors };
} catch (e) {
  out.error = String(e);
} finally {
  await context.close();
}
console.log(JSON.stringify(out));
