// weft's console test runner: opens the admin console (the page weft
// serves at its admin endpoint's `/`, --url) in headless Chromium
// (Debian's, driven by the puppeteer-core that scripts/browser-setup.sh
// installs in tests/browser/node_modules), and then runs the operations it
// reads from stdin, one JSON object a line:
//
//   {"op":"hooks"}                          (what the page shows, see below)
//   {"op":"screenshot","path":"/…/console.png"}
//   {"op":"close"}                          (the end: exit 0)
//
// It writes JSON lines on stdout: {"event":"ready"} once the page is
// loaded and its script runs, {"event":"ok","op":…,"result":…} after each
// operation. `hooks` answers with the page's stable test hooks:
// {"status":"live"|"disconnected","routers":["A",…],"edges":{"A|B":"up",…},
// "shards":N (rows in the shards table),"topics":[…] (busiest topics shown)}.
// Every wait is bounded: an operation that fails or outlasts
// --op-timeout-ms, a page error, stdin ending before "close", or the run
// outlasting --deadline-ms prints {"event":"failed","reason":…} and the
// browser's console on stderr, and exits 1. tests/console.rs drives it
// (with tests/support/browser.rs's Runner). With --hold (perf/console-cost.sh)
// it reads no operations: it keeps the page open until stdin ends.

import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
// The browser tests' install (one package-lock for both runners).
const puppeteer = createRequire(join(here, "../browser/package.json"))("puppeteer-core");

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: process.env.WEFT_CHROMIUM || "/usr/bin/chromium" },
    "op-timeout-ms": { type: "string", default: "20000" },
    "deadline-ms": { type: "string", default: "120000" },
    hold: { type: "boolean", default: false },
  },
});
const opTimeoutMs = Number(args["op-timeout-ms"]);
const deadlineMs = Number(args["deadline-ms"]);

const consoleLines = [];
let browser = null;
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
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(reason) {
  if (finished) return;
  finished = true;
  emit({ event: "failed", reason: String(reason) });
  process.stderr.write(`console runner failed: ${reason}\n--- browser console (${consoleLines.length} lines) ---\n`);
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

async function start() {
  if (!args.url) throw new Error("--url is required");
  userDataDir = mkdtempSync(join(tmpdir(), "weft-chromium-"));
  browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    userDataDir,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    // A cold start on a loaded machine takes longer than an operation.
    timeout: 3 * opTimeoutMs,
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 900 });
  page.on("console", (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => {
    consoleLines.push(`pageerror: ${e.message}`);
    fail(`page error: ${e.message}`);
  });
  page.on("requestfailed", (r) => consoleLines.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) consoleLines.push(`response ${r.status()}: ${r.url()}`);
  });
  await bounded(page.goto(args.url, { waitUntil: "load" }), `open ${args.url}`);
  // The script is added by the page itself (with the token on its URL):
  // ready once it has drawn its first state or said why not.
  await bounded(
    page.waitForFunction(() => document.querySelector("#status") && document.querySelector("script[src^='console.js']")),
    "the page's script",
  );
  if (args.hold) {
    // perf/console-cost.sh measures from here: the stream is open.
    await bounded(
      page.waitForFunction(() => document.querySelector("#status").dataset.state === "live"),
      "the page to show live",
    );
  }
  emit({ event: "ready", page: args.url, browser: await browser.version() });
  return page;
}

async function perform(page, op) {
  switch (op.op) {
    case "hooks":
      return bounded(
        page.evaluate(() => ({
          status: document.querySelector("#status")?.dataset.state ?? null,
          status_text: document.querySelector("#status")?.textContent ?? null,
          routers: [...document.querySelectorAll("[data-router]")].map((n) => n.dataset.router),
          edges: Object.fromEntries(
            [...document.querySelectorAll("[data-edge]")].map((n) => [n.dataset.edge, n.dataset.state]),
          ),
          shards: document.querySelectorAll("#shards tbody tr:not(:has(td.empty))").length,
          topics: [...document.querySelectorAll("#topics tbody td.text")].map((n) => n.textContent),
        })),
        "hooks",
      );
    case "screenshot":
      await bounded(page.screenshot({ path: op.path, fullPage: true }), "screenshot");
      return { path: op.path };
    default:
      throw new Error(`unknown operation ${op.op}`);
  }
}

async function main() {
  if (!args.hold) setTimeout(() => fail(`the run outlasted --deadline-ms ${deadlineMs}`), deadlineMs).unref();
  const page = await start();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  if (args.hold) {
    for await (const _ of lines);
    return finish();
  }
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
      emit({ event: "ok", op: op.op, result: await perform(page, op) });
    } catch (e) {
      return fail(`${op.op} ${JSON.stringify(op)}: ${e.message}`);
    }
  }
  return fail("stdin ended before a close operation");
}

process.on("unhandledRejection", (e) => fail(`unhandled: ${e?.stack ?? e}`));
main().catch((e) => fail(e?.stack ?? e));
