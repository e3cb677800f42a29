"""The interop table: reads DIR/<script>.<broker>.json (one result of a
tests/amqp/ script each) and prints, per script, pass/fail per broker, the
checks that failed, and where the observed values differ between the
brokers (run-specific values, such as fresh addresses and timings, left
out). Exit status 0 when every script passed on the broker named by
--must-pass (default: weft).

Usage: compare.py DIR BROKER... [--must-pass BROKER]
"""

import argparse
import json
import os
import re

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("brokers", nargs="+")
p.add_argument("--must-pass", default="weft")
args = p.parse_args()

# Values that differ from run to run whatever the broker: the random part
# of a fresh name (its form, dots or slashes, is kept: it is a difference),
# link names, ports.
RUN_SPECIFIC = re.compile(r"(interop[./][a-z-]+[./])[0-9a-f]{12}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{27,}|127\.0\.0\.1:\d+")


def load(script, broker):
    path = os.path.join(args.dir, "%s.%s.json" % (script, broker))
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        if not lines:
            err = os.path.join(args.dir, "%s.%s.err" % (script, broker))
            return {"ok": False, "error": "no JSON result (see %s)" % err}
        return json.loads(lines[-1])
    except OSError:
        return None


def flatten(value, path=""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, "%s.%s" % (path, k) if path else k))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, "%s[%d]" % (path, i)))
        return out
    if isinstance(value, str):
        value = RUN_SPECIFIC.sub(lambda m: (m.group(1) or "") + "<run>", value)
    return {path: value}


def short(v, n=60):
    s = json.dumps(v)
    return s if len(s) <= n else s[: n - 3] + "..."


scripts = sorted({f.split(".")[0] for f in os.listdir(args.dir) if f.endswith(".json")})
width = max([len(s) for s in scripts] + [6])
print("%-*s  %s" % (width, "script", "  ".join("%-8s" % b for b in args.brokers)))
failed_required = []
details = []
for script in scripts:
    results = {b: load(script, b) for b in args.brokers}
    cells = []
    for b in args.brokers:
        r = results[b]
        cells.append("%-8s" % ("-" if r is None else ("pass" if r.get("ok") else "FAIL")))
        if r is not None and not r.get("ok"):
            why = r.get("error") or ", ".join(k for k, v in sorted(r.get("checks", {}).items()) if not v)
            details.append("%s on %s failed: %s" % (script, b, why))
            if b == args.must_pass:
                failed_required.append(script)
    print("%-*s  %s" % (width, script, "  ".join(cells)))
    present = [b for b in args.brokers if results[b] is not None]
    if len(present) >= 2:
        a, b = present[0], present[1]
        fa = flatten(results[a].get("observed", {}))
        fb = flatten(results[b].get("observed", {}))
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
                details.append(
                    "%s differs at %s: %s %s, %s %s"
                    % (script, key, a, short(fa.get(key, "<absent>")), b, short(fb.get(key, "<absent>")))
                )
if details:
    print()
    for d in details:
        print(d)
if args.must_pass in args.brokers and failed_required:
    print("\nfailed on %s: %s" % (args.must_pass, " ".join(failed_required)))
    raise SystemExit(1)
