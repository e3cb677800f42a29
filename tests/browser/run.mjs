// weft's browser test runner: serves page/ and the clients' browser
// bundles (MQTT.js, nats.ws) on 127.0.0.1 from node's http module, opens
// the page in headless Chromium (Debian's /usr/bin/chromium, driven by
// puppeteer-core), and then runs the operations it reads from stdin, one
// JSON object a line:
//
//   {"op":"connect","client":"m","kind":"mqtt","url":"ws://…/mqtt","protocol_version":4}
//   {"op":"connect","client":"n","kind":"nats","url":"ws://…"}
//   {"op":"subscribe","client":"m","topic":"a/#","qos":1}
//   {"op":"publish","client":"n","topic":"a.b","payload":"text"}
//   {"op":"wait","client":"m","count":2}      (until m has received 2 in all)
//   {"op":"disconnect","client":"m"}
//   {"op":"screenshot","path":"/…/page.png"}
//   {"op":"close"}                           (the end: exit 0)
//
// It writes JSON lines on stdout: {"event":"ready"} once the page is up,
// {"event":"ok","op":…,"result":…} after each operation, and
// {"event":"message","client":…,"topic":…,"payload":…,"payload_hex":…}
// for each message a client receives ({"event":"client_closed",…} when a
// client's connection ends unasked). Every wait is bounded: an operation
// that fails or outlasts --op-timeout-ms, a client that closes unasked, a
// page error, stdin ending before "close", or the whole run outlasting
// --deadline-ms prints {"event":"failed","reason":…} and the browser's
// console on stderr, and exits 1. tests/browser.rs drives it.

import { createHash, X509Certificate } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    chromium: { type: "string", default: process.env.WEFT_CHROMIUM || "/usr/bin/chromium" },
    "op-timeout-ms": { type: "string", default: "20000" },
    "deadline-ms": { type: "string", default: "120000" },
    // A PEM certificate the browser trusts for wss (a test's own server
    // certificate): pinned by its public key, the one error-ignoring
    // switch Chromium scopes to a key rather than to everything.
    "trust-cert": { type: "string", multiple: true, default: [] },
  },
});
const opTimeoutMs = Number(args["op-timeout-ms"]);
const deadlineMs = Number(args["deadline-ms"]);

// The only files served: a fixed map, nothing read from the request path.
const files = {
  "/": ["page/index.html", "text/html; charset=utf-8"],
  "/weft.js": ["page/weft.js", "text/javascript"],
  "/mqtt.min.js": ["node_modules/mqtt/dist/mqtt.min.js", "text/javascript"],
  "/nats.js": ["node_modules/nats.ws/esm/nats.js", "text/javascript"],
};
const bodies = Object.fromEntries(
  Object.entries(files).map(([path, [file, type]]) => [path, [readFileSync(join(here, file)), type]]),
);

const consoleLines = [];
const received = new Map(); // client -> count of messages
const waiters = new Set(); // () => bool, rechecked after each message
let browser = null;
let server = null;
let userDataDir = null;
let finished = false;

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

async function cleanup() {
  if (browser) {
    const closing = browser.close().catch(() => {});
    const proc = browser.process();
    await Promise.race([closing, new Promise((r) => setTimeout(r, 5000))]);
    if (proc && proc.exitCode === null) proc.kill("SIGKILL");
  }
  if (server) server.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(reason) {
  if (finished) return;
  finished = true;
  emit({ event: "failed", reason: String(reason) });
  process.stderr.write(`browser runner failed: ${reason}\n--- browser console (${consoleLines.length} lines) ---\n`);
  for (const line of consoleLines) process.stderr.write(line + "\n");
  process.stderr.write("--- end of browser console ---\n");
  await cleanup();
  process.exit(1);
}

async function finish() {
  if (finished) return;
  finished = true;
  await cleanup();
  emit({ event: "closed" });
  process.exit(0);
}

function bounded(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${opTimeoutMs} ms`)), opTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function waitFor(check, what) {
  return bounded(
    new Promise((resolve) => {
      const waiter = () => {
        if (!check()) return false;
        waiters.delete(waiter);
        resolve();
        return true;
      };
      if (!waiter()) waiters.add(waiter);
    }),
    what,
  );
}

function onReport(event) {
  emit(event);
  if (event.event === "message") {
    received.set(event.client, (received.get(event.client) ?? 0) + 1);
    for (const waiter of [...waiters]) waiter();
  } else {
    // A client closed unasked, or a subscription reported an error.
    fail(`${event.client}: ${event.event}: ${event.reason}`);
  }
}

async function start() {
  server = createServer((req, res) => {
    const body = req.method === "GET" ? bodies[req.url] : undefined;
    if (!body) {
      res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
      return;
    }
    res.writeHead(200, { "content-type": body[1], "cache-control": "no-store" }).end(body[0]);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;

  // base64(sha256(SubjectPublicKeyInfo)), as --ignore-certificate-errors-spki-list
  // takes them (honoured with a --user-data-dir, which the run has).
  const pins = args["trust-cert"].map((path) => {
    const spki = new X509Certificate(readFileSync(path)).publicKey.export({ type: "spki", format: "der" });
    return createHash("sha256").update(spki).digest("base64");
  });
  userDataDir = mkdtempSync(join(tmpdir(), "weft-chromium-"));
  browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    userDataDir,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...(pins.length ? [`--ignore-certificate-errors-spki-list=${pins.join(",")}`] : []),
    ],
    // A cold start on a loaded machine takes longer than an operation.
    timeout: 3 * opTimeoutMs,
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 700 });
  page.on("console", (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => {
    consoleLines.push(`pageerror: ${e.message}`);
    fail(`page error: ${e.message}`);
  });
  page.on("requestfailed", (r) => consoleLines.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  await page.exposeFunction("weftReport", onReport);
  await bounded(page.goto(pageUrl, { waitUntil: "load" }), `open ${pageUrl}`);
  await bounded(page.waitForFunction(() => window.weft && window.mqtt), "the page's scripts");
  emit({ event: "ready", page: pageUrl, browser: await browser.version() });
  return page;
}

async function perform(page, op) {
  switch (op.op) {
    case "wait": {
      const count = Number(op.count);
      await waitFor(() => (received.get(op.client) ?? 0) >= count, `wait for ${count} messages at ${op.client}`);
      return { received: received.get(op.client) ?? 0 };
    }
    case "screenshot":
      await bounded(page.screenshot({ path: op.path, fullPage: true }), "screenshot");
      return { path: op.path };
    default:
      return bounded(
        page.evaluate((o) => window.weft.run(o), op),
        `${op.op} ${op.client ?? ""}`,
      );
  }
}

async function main() {
  setTimeout(() => fail(`the run outlasted --deadline-ms ${deadlineMs}`), deadlineMs).unref();
  const page = await start();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let op;
    try {
      op = JSON.parse(line);
    } catch (e) {
      return fail(`bad operation line ${JSON.stringify(line)}: ${e.message}`);
    }
    if (op.op === "close") return finish();
    try {
      emit({ event: "ok", op: op.op, client: op.client, result: await perform(page, op) });
    } catch (e) {
      return fail(`${op.op} ${JSON.stringify(op)}: ${e.message}`);
    }
  }
  return fail("stdin ended before a close operation");
}

process.on("unhandledRejection", (e) => fail(`unhandled: ${e?.stack ?? e}`));
main().catch((e) => fail(e?.stack ?? e));
