#!/usr/bin/env bash
# Prints the import cycles of src/: between top-level modules (folders and
# files under src/, e.g. `config` <-> `mesh`), and between the files and
# subfolders of each folder (e.g. src/shard/hold.rs <-> src/shard/mailbox.rs).
# Exits 1 if there is any (item 6 of #11: none between folders; and none
# between the files of a folder either, since there are none today and a
# cycle there is a layer that no longer reads top to bottom).
# scripts/test.sh runs it first; it needs only python3.
#
# A reference is any `crate::` or `super::` path outside comments and test
# code (`#[cfg(test)]` to the end of a file, and `tests.rs` files): tests
# may reach anywhere without shaping the layers.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

files = {}
for root, _, names in os.walk("src"):
    for n in names:
        if n.endswith(".rs") and n != "tests.rs":
            files[os.path.join(root, n)] = None

def module_of(path):
    parts = path[len("src/"):-len(".rs")].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)

mods = {module_of(p): p for p in files}

# Comments, string literals (escapes and `\`-continued lines included, raw
# strings with their #s) and char literals, in one left-to-right pass, so a
# `//` inside a string or a quote inside a comment cannot hide code. A
# lifetime (`'a`) is not a char literal: the char pattern needs the closing
# quote right after one (possibly escaped) character.
TOKENS = re.compile(
    r'//[^\n]*'
    r'|/\*.*?\*/'
    r'|b?r(?P<hashes>#*)".*?"(?P=hashes)'
    r'|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^'\\\n])'",
    re.S,
)

def strip(text):
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    return TOKENS.sub(lambda m: '""' if m.group(0)[-1] in "\"'#" else " ", text)

def paths(text):
    """Yields (kind, [segments]) for crate::/super:: paths, groups expanded."""
    for m in re.finditer(r"\b(crate|super)((?:::super)*)::", text):
        kind, ups = m.group(1), m.group(2).count("super")
        rest = text[m.end():]
        yield from expand(kind, ups, rest)

def expand(kind, ups, rest, prefix=()):
    rest = rest.lstrip()
    if rest.startswith("{"):
        depth, i, items, start = 0, 0, [], 1
        for i, c in enumerate(rest):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    items.append(rest[start:i])
                    break
            elif c == "," and depth == 1:
                items.append(rest[start:i])
                start = i + 1
        for item in items:
            item = item.strip()
            if item:
                yield from expand(kind, ups, item, prefix)
        return
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", rest)
    if not m:
        return
    segs = list(prefix) + m.group(0).split("::")
    tail = rest[m.end():]
    if tail.startswith("::{"):
        yield from expand(kind, ups, tail[2:], tuple(segs))
        return
    yield kind, ups, segs

def resolve(src_mod, is_mod_file, kind, ups, segs):
    if kind == "crate":
        base = ()
    else:
        # `super` of a file module is its parent; of a mod.rs, the parent too
        # (mod.rs *is* the folder's module).
        base = src_mod[:-1]
        for _ in range(ups):
            base = base[:-1]
    full = base + tuple(segs)
    # Longest prefix that is a module of ours.
    for n in range(len(full), 0, -1):
        if full[:n] in mods:
            return full[:n]
    return None

edges = set()
for path, _ in files.items():
    src_mod = module_of(path)
    text = strip(open(path, encoding="utf-8").read())
    is_mod = path.endswith("mod.rs")
    for kind, ups, segs in paths(text):
        dst = resolve(src_mod, is_mod, kind, ups, segs)
        if dst is not None and dst != src_mod:
            edges.add((src_mod, dst))

def sccs(nodes, adj):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out

def report(title, pairs):
    adj, nodes = {}, set()
    for a, b in pairs:
        if a != b:
            adj.setdefault(a, set()).add(b)
            nodes |= {a, b}
    found = sccs(nodes, adj)
    for comp in found:
        members = set(comp)
        links = sorted(f"{a} -> {b}" for a in comp for b in adj.get(a, ()) if b in members)
        print(f"{title}: {' <-> '.join(comp)}")
        for l in links:
            print(f"    {l}")
    return found

top = {(a[0], b[0]) for a, b in edges if a and b and a[0] != b[0]}
found = report("cycle between top-level modules", {("src/" + a, "src/" + b) for a, b in top})

# Within each folder: edges between its direct children.
folders = {m[:-1] for m in mods if len(m) >= 1}
for folder in sorted(folders):
    pairs = set()
    d = len(folder)
    for a, b in edges:
        if a[:d] == folder and b[:d] == folder and len(a) > d and len(b) > d and a[d] != b[d]:
            pairs.add(("/".join(("src",) + a[: d + 1]), "/".join(("src",) + b[: d + 1])))
    if folder == ():
        continue  # reported above
    found += report(f"cycle between files of src/{'/'.join(folder)}", pairs)

if found:
    print(f"{len(found)} import cycle(s) in src/ (above): each arrow is a `crate::` or "
          "`super::` path outside comments and tests; break one arrow per cycle", file=sys.stderr)
    sys.exit(1)
PY
