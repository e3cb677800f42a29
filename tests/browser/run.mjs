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
// console on stderr, and exits 1. tests/browser.rs drives it. The launch,
// the bounds and the operation loop are harness.mjs's (shared with
// tests/console/run.mjs).

import { createHash, X509Certificate } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  bounded,
  configure,
  deadline,
  emit,
  fail,
  launch,
  onCleanup,
  runOps,
  stdinLines,
} from "./harness.mjs";

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
const deadlineMs = Number(args["deadline-ms"]);
configure({ name: "browser runner", opTimeout: Number(args["op-timeout-ms"]) });

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

const received = new Map(); // client -> count of messages
const waiters = new Set(); // () => bool, rechecked after each message
let server = null;
onCleanup(() => {
  if (server) server.close();
});

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
  const { browser, page } = await launch({
    chromium: args.chromium,
    extraArgs: ["--disable-quic", ...(pins.length ? [`--ignore-certificate-errors-spki-list=${pins.join(",")}`] : [])],
    viewport: { width: 1000, height: 700 },
  });
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
  deadline(deadlineMs);
  const page = await start();
  return runOps(stdinLines(), (op) => perform(page, op), { withClient: true });
}

process.on("unhandledRejection", (e) => fail(`unhandled: ${e?.stack ?? e}`));
main().catch((e) => fail(e?.stack ?? e));
