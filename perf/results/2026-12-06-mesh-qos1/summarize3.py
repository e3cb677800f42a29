#!/usr/bin/env python3
"""Summarize qos1-3way.sh raw output (before/after/head): medians, all runs, ratios to before;
plus acknowledged msg/s, LOST and A->B dropped/evicted medians and resend_store_waits."""
import json, os, re, statistics, sys

raw = sys.argv[1] if len(sys.argv) > 1 else "/work/wt/bench/raw"
runs = {}  # (which, kind) -> list of dict
for f in sorted(os.listdir(raw)):
    m = re.fullmatch(r"(before|after|head)-(tput2|lat2|tput1|lat1)-r(\d+)\.out", f)
    if not m:
        continue
    which, kind, rep = m.group(1), m.group(2), int(m.group(3))
    base = os.path.join(raw, f[:-4])
    d = {"rep": rep, "ok": os.path.exists(base + ".json")}
    if d["ok"]:
        j = json.load(open(base + ".json"))
        t = j["totals"]
        d.update(
            sent=t["sent"], received=t["received"], lost=t["lost"], extra=t["extra"],
            pub_rate=t["publish"]["msgs_per_s"], deliver_rate=t["deliver"]["msgs_per_s"],
            errors=j["errors"], bench_cpu=j["cpu"]["user_s"] + j["cpu"]["sys_s"],
        )
        if j.get("latency"):
            lat = j["latency"]
            d.update(p50=lat["p50_us"], p99=lat["p99_us"], p999=lat["p99_9_us"], max=lat["max_us"])
        if j.get("send_lag"):
            d["lag_p50"] = j["send_lag"]["p50_us"]
    if os.path.exists(base + ".cpu"):
        b0, s0, r0, b1, s1, r1, t0, t1, hz = map(float, open(base + ".cpu").read().split())
        wall = max(t1 - t0, 1e-9)
        d["routers_pct"] = 100 * (r1 - r0) / hz / wall
        d["others_pct"] = max(0.0, 100 * ((b1 - b0 - (r1 - r0)) / hz - d.get("bench_cpu", 0)) / wall)
        d["steal_pct"] = 100 * (s1 - s0) / hz / wall
    # /links: A's link to B (unacked, unacked_evicted, dropped), and all routers' sums
    links = {}
    for g in os.listdir(raw):
        lm = re.fullmatch(re.escape(f[:-4]) + r"\.links-(\w+)\.json", g)
        if lm:
            try:
                links[lm.group(1)] = json.load(open(os.path.join(raw, g)))
            except Exception:
                links[lm.group(1)] = None
    a = links.get("A") or {}
    ab = [l for l in a.get("links", []) if l.get("peer") == "B"]
    if ab:
        d["A_unacked"] = ab[0].get("unacked")
        d["A_evicted"] = ab[0].get("unacked_evicted")
        d["A_dropped"] = ab[0].get("dropped")
    b = links.get("B") or {}
    bc = [l for l in b.get("links", []) if l.get("peer") == "C"]
    if bc:
        d["B_unacked"] = bc[0].get("unacked")
        d["B_evicted"] = bc[0].get("unacked_evicted")
        d["B_dropped"] = bc[0].get("dropped")
    d["no_route"] = sum((v or {}).get("no_route", 0) or 0 for v in links.values())
    d["held_dropped"] = sum((v or {}).get("held_dropped", 0) or 0 for v in links.values())
    d["waits"] = sum(((v or {}).get("resend_store_waits") or 0) for v in links.values()) if any(
        "resend_store_waits" in (v or {}) for v in links.values()) else None
    d["dups"] = sum((v or {}).get("duplicates_dropped", 0) or 0 for v in links.values())
    runs.setdefault((which, kind), []).append(d)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"

WHICH = [w for w in ["before", "after", "head"] if any(k[0] == w for k in runs)]
COMMIT = {"before": "6d054bd", "after": "79406bc", "head": "a89719e"}
KINDS = [
    ("tput2", "2 hops A→B→C, delivered msg/s", "deliver_rate"),
    ("tput2", "2 hops A→B→C, acknowledged msg/s (PUBACKs from A)", "pub_rate"),
    ("tput2", "2 hops A→B→C, LOST (acknowledged, never delivered)", "lost"),
    ("tput2", "2 hops A→B→C, A→B `dropped`", "A_dropped"),
    ("tput2", "2 hops A→B→C, A→B `unacked_evicted`", "A_evicted"),
    ("tput2", "2 hops A→B→C, B→C `unacked_evicted`", "B_evicted"),
    ("tput2", "2 hops A→B→C, resend_store_waits (A+B+C)", "waits"),
    ("lat2", "2 hops A→B→C @10k/s, p50 µs", "p50"),
    ("lat2", "2 hops A→B→C @10k/s, p99 µs", "p99"),
    ("lat2", "2 hops A→B→C @10k/s, p99.9 µs", "p999"),
    ("lat2", "2 hops A→B→C @10k/s, LOST", "lost"),
    ("tput1", "1 hop A→B (control), delivered msg/s", "deliver_rate"),
    ("tput1", "1 hop A→B (control), acknowledged msg/s (PUBACKs from A)", "pub_rate"),
    ("tput1", "1 hop A→B (control), LOST (acknowledged, never delivered)", "lost"),
    ("tput1", "1 hop A→B (control), A→B `dropped`", "A_dropped"),
    ("tput1", "1 hop A→B (control), A→B `unacked_evicted`", "A_evicted"),
    ("tput1", "1 hop A→B (control), resend_store_waits (A+B)", "waits"),
    ("lat1", "1 hop A→B (control) @10k/s, p50 µs", "p50"),
    ("lat1", "1 hop A→B (control) @10k/s, p99 µs", "p99"),
    ("lat1", "1 hop A→B (control) @10k/s, p99.9 µs", "p999"),
    ("lat1", "1 hop A→B (control) @10k/s, LOST", "lost"),
]
RATIO_KEYS = {"deliver_rate", "pub_rate", "p50", "p99", "p999"}
out = []
hdr = "| metric | " + " | ".join(f"{w} {COMMIT[w]} (median)" for w in WHICH)
others = [w for w in WHICH if w != "before"]
hdr += " | " + " | ".join(f"{w}/before" for w in others)
hdr += " | " + " | ".join(f"{w}, all runs" for w in WHICH) + " |"
out.append(hdr)
out.append("|---|" + "---:|" * (len(WHICH) + len(others)) + "---|" * len(WHICH))
for kind, label, key in KINDS:
    if not any(runs.get((w, kind)) for w in WHICH):
        continue
    vals = {w: [r.get(key) for r in sorted(runs.get((w, kind), []), key=lambda r: r["rep"])] for w in WHICH}
    meds = {w: med(vals[w]) for w in WHICH}
    row = f"| {label} | " + " | ".join(fmt(meds[w]) for w in WHICH)
    for w in others:
        if key in RATIO_KEYS and meds["before"] and meds[w]:
            row += f" | {meds[w] / meds['before']:.2f}"
        else:
            row += " | –"
    row += " | " + " | ".join(", ".join(fmt(x) for x in vals[w]) for w in WHICH) + " |"
    out.append(row)
out.append("")
out.append("Per run (r = repetition; A→B / B→C: that link's `unacked`, `unacked_evicted`, `dropped` "
           "in `/links` 0.3 s after the run; lost = sent − received; waits = `resend_store_waits` summed over the "
           "path's routers (– : the binary has no such counter); others % = CPU of other "
           "processes on the machine during the run, % of one core):")
out.append("")
out.append("| run | sent | received | lost | extra | acked msg/s | deliver msg/s | p50 | p99 | p99.9 | max µs | A→B unacked / evicted / dropped | B→C unacked / evicted / dropped | waits | dups dropped | routers CPU % | others % | steal % |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
for kind in ["tput2", "lat2", "tput1", "lat1"]:
    for which in WHICH:
        for r in sorted(runs.get((which, kind), []), key=lambda r: r["rep"]):
            if not r["ok"]:
                out.append(f"| {which}-{kind}-r{r['rep']} | failed |" + " |" * 17)
                continue
            ab = f"{r.get('A_unacked', '–')} / {r.get('A_evicted', '–')} / {r.get('A_dropped', '–')}"
            bc = (f"{r.get('B_unacked')} / {r.get('B_evicted')} / {r.get('B_dropped')}"
                  if "B_unacked" in r else "n/a")
            out.append(
                f"| {which}-{kind}-r{r['rep']} | {r['sent']:,} | {r['received']:,} | {r['lost']:,} | {r['extra']:,} | "
                f"{fmt(r['pub_rate'])} | {fmt(r['deliver_rate'])} | {fmt(r.get('p50'))} | {fmt(r.get('p99'))} | {fmt(r.get('p999'))} | "
                f"{fmt(r.get('max'))} | {ab} | {bc} | {fmt(r.get('waits'))} | {r['dups']} | {fmt(r.get('routers_pct'))} | "
                f"{fmt(r.get('others_pct'))} | {fmt(r.get('steal_pct'))} |")
print("\n".join(out))
