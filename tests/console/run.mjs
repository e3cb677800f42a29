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

import { parseArgs } from "node:util";
// The browser tests' install (one package-lock for both runners) and
// their harness: launch, bounds, the operation loop.
import {
  bounded,
  configure,
  consoleLines,
  deadline,
  emit,
  fail,
  finish,
  launch,
  runOps,
  stdinLines,
} from "../browser/harness.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: process.env.WEFT_CHROMIUM || "/usr/bin/chromium" },
    "op-timeout-ms": { type: "string", default: "20000" },
    "deadline-ms": { type: "string", default: "120000" },
    hold: { type: "boolean", default: false },
  },
});
const deadlineMs = Number(args["deadline-ms"]);
configure({ name: "console runner", opTimeout: Number(args["op-timeout-ms"]) });

async function start() {
  if (!args.url) throw new Error("--url is required");
  const { browser, page } = await launch({ chromium: args.chromium, viewport: { width: 1100, height: 900 } });
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
  if (!args.hold) deadline(deadlineMs);
  const page = await start();
  const lines = stdinLines();
  if (args.hold) {
    for await (const _ of lines);
    return finish();
  }
  return runOps(lines, (op) => perform(page, op));
}

process.on("unhandledRejection", (e) => fail(`unhandled: ${e?.stack ?? e}`));
main().catch((e) => fail(e?.stack ?? e));
