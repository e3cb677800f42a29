// The shared half of the browser test runners (tests/browser/run.mjs and
// tests/console/run.mjs): headless Chromium launched with the runners'
// flags in a throwaway profile, the page's console kept for a failure
// report, JSON lines on stdout, every wait bounded by --op-timeout-ms, the
// whole run by --deadline-ms, and the loop that reads the operations from
// stdin, one JSON object a line, until {"op":"close"}. Each runner keeps
// its own options, page and operations. One harness a process: its state
// is this module's.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

// What the page printed (and failed to load), shown when the run fails.
export const consoleLines = [];
let runner = "runner";
let opTimeoutMs = 20000;
const cleanups = [];
let browser = null;
let userDataDir = null;
let finished = false;

// `name` names the runner in its failure report; `opTimeout` bounds
// each wait.
export function configure({ name, opTimeout }) {
  runner = name;
  opTimeoutMs = opTimeout;
}

// Run at the end (pass or fail), after the browser is closed.
export function onCleanup(fn) {
  cleanups.push(fn);
}

export function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

async function cleanup() {
  if (browser) {
    const closing = browser.close().catch(() => {});
    const proc = browser.process();
    await Promise.race([closing, new Promise((r) => setTimeout(r, 5000))]);
    if (proc && proc.exitCode === null) proc.kill("SIGKILL");
  }
  for (const fn of cleanups) fn();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}

export async function fail(reason) {
  if (finished) return;
  finished = true;
  emit({ event: "failed", reason: String(reason) });
  process.stderr.write(`${runner} failed: ${reason}\n--- browser console (${consoleLines.length} lines) ---\n`);
  for (const line of consoleLines) process.stderr.write(line + "\n");
  process.stderr.write("--- end of browser console ---\n");
  await cleanup();
  process.exit(1);
}

export async function finish() {
  if (finished) return;
  finished = true;
  await cleanup();
  emit({ event: "closed" });
  process.exit(0);
}

export function bounded(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${opTimeoutMs} ms`)), opTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Fails the run once it has lasted `deadlineMs`.
export function deadline(deadlineMs) {
  setTimeout(() => fail(`the run outlasted --deadline-ms ${deadlineMs}`), deadlineMs).unref();
}

// Launches Chromium (`chromium`, with `extraArgs` after the common
// flags) in a fresh profile and opens a page of `viewport` whose console
// and page errors are kept (a page error fails the run).
export async function launch({ chromium, extraArgs = [], viewport }) {
  userDataDir = mkdtempSync(join(tmpdir(), "weft-chromium-"));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
    // A cold start on a loaded machine takes longer than an operation.
    timeout: 3 * opTimeoutMs,
  });
  const page = await browser.newPage();
  await page.setViewport(viewport);
  page.on("console", (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => {
    consoleLines.push(`pageerror: ${e.message}`);
    fail(`page error: ${e.message}`);
  });
  page.on("requestfailed", (r) => consoleLines.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  return { browser, page };
}

// stdin, a line at a time.
export function stdinLines() {
  return createInterface({ input: process.stdin, crlfDelay: Infinity });
}

// Runs the operations read from `lines` with `perform(op)` until
// {"op":"close"}, answering each with {"event":"ok",…} (with the op's
// client when `withClient`); a bad line, a failed operation or stdin
// ending first fails the run.
export async function runOps(lines, perform, { withClient = false } = {}) {
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
      const result = await perform(op);
      emit(withClient ? { event: "ok", op: op.op, client: op.client, result } : { event: "ok", op: op.op, result });
    } catch (e) {
      return fail(`${op.op} ${JSON.stringify(op)}: ${e.message}`);
    }
  }
  return fail("stdin ended before a close operation");
}
