// weft's admin console: draws what /console/events sends (one `state`
// event with a ConsoleState JSON per admin.console_interval_ms): the mesh
// as a graph, this router's shards, slow consumers and busiest topics.
//
// Plain SVG and vanilla JS on purpose, no framework and no graph library:
// there is no build step (the three files are embedded in the binary with
// include_str! as they are), nothing is fetched from a CDN (the router's
// host may be offline or air-gapped), and nothing of a third party's needs
// keeping up to date. A circle layout is enough for a mesh of a few dozen
// routers, and re-drawing the whole SVG once a second costs little.
//
// Everything the router sends that a client chose (client ids, topics,
// router ids) is put in the page as text (textContent, SVG text nodes),
// never as markup.
//
// Stable hooks for tests (tests/console.rs): `[data-router="ID"]` per
// router node, `[data-edge="A|B"]` per link (the two router ids sorted,
// joined by `|`) with `data-state` up|held|connecting|down, and `#status`
// with `data-state` live|disconnected.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const token = new URLSearchParams(location.search).get("access_token");
  const withToken = (path) => (token ? `${path}?access_token=${encodeURIComponent(token)}` : path);

  // Worst first: a link shows the worse of what its two ends report.
  const RANK = { up: 0, held: 1, connecting: 2, down: 3 };
  const rank = (s) => RANK[s] ?? RANK.down;

  const $ = (sel) => document.querySelector(sel);
  const statusEl = $("#status");

  // ------------------------------------------------------------ the stream

  let source = null;
  let lastStateAt = 0;
  let lastState = null;
  let intervalMs = 1000;
  let retryMs = 1000;
  let retryTimer = null;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    document.body.classList.toggle("stale", state !== "live");
  }

  function disconnected(why) {
    const last = lastState ? ` · last update ${clock(lastState.time_ms)}` : "";
    setStatus("disconnected", `disconnected: ${why}${last}`);
  }

  function connect() {
    retryTimer = null;
    if (source) source.close();
    source = new EventSource(withToken("console/events"));
    source.addEventListener("state", (e) => {
      let state;
      try {
        state = JSON.parse(e.data);
      } catch (err) {
        console.error("console: a state that is not JSON", err);
        return;
      }
      lastStateAt = Date.now();
      retryMs = 1000;
      intervalMs = state.interval_ms || intervalMs;
      setStatus("live", `live · ${clock(state.time_ms)}`);
      render(state);
      lastState = state;
    });
    source.onerror = () => {
      // CONNECTING: the browser retries by itself. CLOSED (an answer that
      // is not a stream: 401, 503 when admin.console_streams_max streams
      // are open): it does not, so the page does, backing off.
      disconnected(source.readyState === EventSource.CLOSED ? "refused, retrying" : "retrying");
      if (source.readyState === EventSource.CLOSED) reconnectLater();
    };
  }

  function reconnectLater() {
    if (retryTimer) return;
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }

  // A stream that stays open but says nothing (a hung router, a proxy that
  // buffers) is as good as closed: after three intervals without a state.
  setInterval(() => {
    if (statusEl.dataset.state !== "live") return;
    if (Date.now() - lastStateAt > Math.max(3 * intervalMs, 3000)) {
      disconnected("no update");
      if (source) source.close();
      reconnectLater();
    }
  }, 500);

  // ------------------------------------------------------------ formatting

  function clock(ms) {
    return ms ? new Date(ms).toLocaleTimeString() : "";
  }

  function num(n) {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString();
    return n.toFixed(1);
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function rtt(us) {
    if (us === null || us === undefined) return null;
    return us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us} µs`;
  }

  function el(name, attrs = {}, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------ the mesh

  // Counters of the previous state, per reported edge `from>to`, for rates.
  let prevCounters = new Map();
  let prevTime = 0;

  /// One entry per unordered pair of routers: the state is the worse of
  /// the two ends' reports (each end's best entry, as an inbound link may
  /// be listed once per connection), rates from the counters' deltas.
  function mergeEdges(mesh, timeMs) {
    const reported = new Map(); // `from>to` -> {state, tls, rtt, out, in, dropped}
    for (const e of mesh.edges || []) {
      if (!e.from || !e.to || e.from === e.to) continue;
      const key = `${e.from}>${e.to}`;
      const r = reported.get(key);
      if (!r) {
        reported.set(key, {
          state: e.state, tls: !!e.tls, rtt: e.rtt_us ?? null,
          out: e.events_out || 0, in: e.events_in || 0, dropped: e.dropped || 0,
        });
        continue;
      }
      if (rank(e.state) < rank(r.state)) {
        r.state = e.state;
        r.rtt = e.rtt_us ?? r.rtt;
        r.tls = !!e.tls;
      }
      r.out += e.events_out || 0;
      r.in += e.events_in || 0;
      r.dropped += e.dropped || 0;
    }
    const dt = prevTime && timeMs > prevTime ? (timeMs - prevTime) / 1000 : 0;
    const rate = (key, field) => {
      const now = reported.get(key);
      const before = prevCounters.get(key);
      if (!now || !before || !dt) return null;
      const d = now[field] - before[field];
      return d >= 0 ? d / dt : null; // below 0: a restart reset the counters
    };
    const pairs = new Map();
    for (const key of reported.keys()) {
      const [from, to] = key.split(">");
      const [a, b] = [from, to].sort();
      const id = `${a}|${b}`;
      if (pairs.has(id)) continue;
      const ab = reported.get(`${a}>${b}`);
      const ba = reported.get(`${b}>${a}`);
      const ends = [ab, ba].filter(Boolean);
      // a→b: what a sent, else what b received; and the other way.
      const dir = (x, y, there, back) => rate(`${x}>${y}`, there) ?? rate(`${y}>${x}`, back);
      const rates = [dir(a, b, "out", "in"), dir(b, a, "out", "in")].filter((r) => r !== null);
      pairs.set(id, {
        id, a, b,
        state: ends.reduce((s, r) => (rank(r.state) > rank(s) ? r.state : s), "up"),
        tls: ends.every((r) => r.tls),
        rtt: Math.max(...ends.map((r) => r.rtt ?? -1)),
        dropped: Math.max(...ends.map((r) => r.dropped)),
        rate: rates.length ? rates.reduce((x, y) => x + y, 0) : null,
      });
    }
    prevCounters = reported;
    prevTime = timeMs;
    return [...pairs.values()];
  }

  function layout(ids, width, height) {
    const pos = new Map();
    const cx = width / 2;
    const cy = height / 2;
    // An ellipse as wide as the box allows (labels need the room).
    const [rx, ry] = [width / 2 - 140, height / 2 - 60];
    ids.forEach((id, i) => {
      if (ids.length === 1) return pos.set(id, [cx, cy]);
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / ids.length;
      pos.set(id, [cx + rx * Math.cos(angle), cy + ry * Math.sin(angle)]);
    });
    return pos;
  }

  function lock(x, y) {
    // On the line, at its middle, on a white disc.
    const g = el("g", { class: "lock", transform: `translate(${x - 5},${y - 9})` });
    g.appendChild(el("title", {}, "TLS"));
    g.appendChild(el("circle", { cx: 5, cy: 8, r: 9, fill: "#fff" }));
    g.appendChild(el("rect", { x: 0, y: 5, width: 10, height: 8, rx: 1.5 }));
    g.appendChild(el("path", { d: "M2 5.5V3.5a3 3 0 0 1 6 0v2", fill: "none", stroke: "#444", "stroke-width": 1.6 }));
    return g;
  }

  function renderMesh(state) {
    const svg = $("#mesh");
    const [w, h] = [900, 420];
    const mesh = state.mesh;
    const routers = new Map();
    if (mesh) {
      // age_ms null: known only as another router's peer (no record).
      for (const r of mesh.routers || []) routers.set(r.id, { ...r, unknown: !r.self && r.age_ms === null });
    }
    if (!routers.has(state.router_id)) routers.set(state.router_id, { id: state.router_id, self: true });
    const edges = mesh ? mergeEdges(mesh, state.time_ms) : [];
    // A router only named as a link's peer (no record of its own, or
    // expired) is drawn too, dashed.
    for (const e of edges) {
      for (const id of [e.a, e.b]) if (!routers.has(id)) routers.set(id, { id, unknown: true });
    }
    const ids = [...routers.keys()].sort();
    const pos = layout(ids, w, h);

    const frag = document.createDocumentFragment();
    const edgeLayer = el("g", { class: "edges" });
    for (const e of edges.sort((x, y) => (x.id < y.id ? -1 : 1))) {
      const [x1, y1] = pos.get(e.a);
      const [x2, y2] = pos.get(e.b);
      const g = el("g", { class: "edge", "data-edge": e.id, "data-state": e.state });
      g.appendChild(el("title", {}, `${e.a} – ${e.b}: ${e.state}`));
      g.appendChild(el("line", { x1, y1, x2, y2 }));
      // Labels at the middle, pushed off the line along its normal.
      const len = Math.hypot(x2 - x1, y2 - y1) || 1;
      const [nx, ny] = [-(y2 - y1) / len, (x2 - x1) / len];
      const mx = (x1 + x2) / 2 + nx * 14;
      const my = (y1 + y2) / 2 + ny * 14 + 4;
      // Text grows away from the line: a steep line's labels start (or
      // end) beside it, a flat line's are centred above or below it.
      const anchor = nx > 0.4 ? "start" : nx < -0.4 ? "end" : "middle";
      const lines = [];
      if (e.state !== "up") lines.push([e.state, "state"]);
      const facts = [];
      if (e.rate !== null) facts.push(`${num(e.rate)} ev/s`);
      // A link that is not up has no round trip now (its last is stale).
      const r = rtt(e.state === "up" && e.rtt >= 0 ? e.rtt : null);
      if (r) facts.push(r);
      if (facts.length) lines.push([facts.join(" · "), ""]);
      if (e.dropped > 0) lines.push([`${num(e.dropped)} dropped`, "state"]);
      // The block of lines (13 px each) clear of the line: above it when
      // the normal points up, below when down, centred beside it else.
      const block = (lines.length - 1) * 13;
      const top = ny < -0.4 ? my - 4 - block : ny > 0.4 ? my + 6 : my - block / 2;
      lines.forEach(([text, cls], i) => {
        g.appendChild(el("text", { x: mx, y: top + i * 13, "text-anchor": anchor, class: cls }, text));
      });
      if (e.tls) g.appendChild(lock((x1 + x2) / 2, (y1 + y2) / 2));
      edgeLayer.appendChild(g);
    }
    frag.appendChild(edgeLayer);

    const nodeLayer = el("g", { class: "routers" });
    for (const id of ids) {
      const r = routers.get(id);
      const [x, y] = pos.get(id);
      const self = id === state.router_id;
      const cls = ["router", self ? "self" : "", r.unknown ? "unknown" : ""].join(" ").trim();
      const g = el("g", { class: cls, "data-router": id, transform: `translate(${x},${y})` });
      g.appendChild(el("title", {}, r.unknown ? `${id}: no record (unknown or expired)` : id));
      g.appendChild(el("circle", { r: 28 }));
      g.appendChild(el("text", { class: "id", y: 5 }, id));
      const sub = self ? "this router" : r.unknown ? "no record" : typeof r.age_ms === "number" ? `record ${num(r.age_ms / 1000)} s old` : "";
      if (sub) g.appendChild(el("text", { class: "sub", y: 44 }, sub));
      nodeLayer.appendChild(g);
    }
    frag.appendChild(nodeLayer);
    svg.replaceChildren(frag);

    const up = edges.filter((e) => e.state === "up").length;
    $("#mesh-note").textContent = mesh
      ? `${ids.length} router${ids.length === 1 ? "" : "s"}, ${edges.length} link${edges.length === 1 ? "" : "s"} (${up} up). ` +
        "Green: up · amber dashed: held (down, expected back) · grey dotted: connecting · red dashed: down. " +
        "Rates are events per second both ways; a lock marks TLS."
      : "The mesh is off on this router.";
  }

  // ------------------------------------------------------------ the tables

  function fillTable(selector, rows, empty) {
    const tbody = $(`${selector} tbody`);
    const columns = $(`${selector} thead tr`).children.length;
    const out = document.createDocumentFragment();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns;
      td.className = "empty";
      td.textContent = empty;
      tr.appendChild(td);
      out.appendChild(tr);
    }
    for (const cells of rows) {
      const tr = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        if (cell instanceof Node) td.appendChild(cell);
        else if (cell && typeof cell === "object") {
          td.textContent = cell.text;
          td.className = "text";
          td.title = cell.text;
        } else td.textContent = cell;
        tr.appendChild(td);
      }
      out.appendChild(tr);
    }
    tbody.replaceChildren(out);
  }

  function render(state) {
    $("#router-id").textContent = state.router_id ?? "";
    document.title = `weft ${state.router_id ?? ""}`;
    renderMesh(state);
    fillTable(
      "#shards",
      (state.shards || []).map((s) => [
        s.shard, num(s.connections), num(s.publishes_per_s), num(s.deliveries_per_s),
        num(s.queued_messages), bytes(s.queued_bytes), num(s.ring_waits),
        num(s.latency_us?.p50), num(s.latency_us?.p99), num(s.latency_us?.p999),
      ]),
      "no shard has answered yet",
    );
    fillTable(
      "#slow",
      (state.slow_consumers || []).map((c) => [
        c.shard, { text: c.protocol }, { text: c.client_id }, num(c.queued_messages), bytes(c.queued_bytes), num(c.dropped),
      ]),
      "none",
    );
    const topics = state.topics || [];
    const top = Math.max(1e-9, ...topics.map((t) => t.events_per_s));
    fillTable(
      "#topics",
      topics.map((t) => {
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${Math.round((80 * t.events_per_s) / top)}px`;
        return [{ text: t.topic }, num(t.events_per_s), bar];
      }),
      "no events in the last interval",
    );
  }

  connect();
})();
