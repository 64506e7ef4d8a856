// Switchyard admin dashboard: polls /admin/api/stats every second with the
// admin key and draws it. No framework, no build step (docs/admin.md).
const KEY = "switchyard.admin.key"; // sessionStorage: this tab only
const SPAN = 120; // seconds on the charts
const LAT_WINDOW = 10; // seconds of observations behind the latency figures
const C = {in: "#36cfe0", out: "#a78bfa", del: "#3ddc97", p50: "#3ddc97", p95: "#ffb547", p99: "#ff6b8b", ws: "#5b9dff", wt: "#ffb547"};
const $ = (id) => document.getElementById(id);
const text = (id, v) => ($(id).textContent = v);

const hist = []; // a point per snapshot: {t, in, out, del, p50, p95, p99, ws, wt}
const snaps = []; // {t, buckets, count}: recent latency histograms
let prev = null, timer = 0, last = null, gen = 0; // gen: one poll loop at a time
window.admin = {updates: 0, last: null}; // for tests

// el builds an element; attrs are attributes (never style: the CSP forbids it).
function el(tag, attrs, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

// ---- formatting
const nf = new Intl.NumberFormat("en-US");
function num(v) {
  if (v == null || !isFinite(v)) return "—";
  const a = Math.abs(v);
  for (const [d, u] of [[1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
    if (a >= d) return (v / d).toFixed(a >= d * 100 ? 0 : 1) + u;
  }
  return nf.format(Math.round(v));
}
const rate = (v) => (v == null ? "—" : v > 0 && v < 10 ? v.toFixed(1) : num(v));
function dur(s) {
  if (s == null || !isFinite(s)) return "—";
  if (s === 0) return "0";
  if (s < 1e-3) return Math.round(s * 1e6) + " µs";
  if (s < 1) return +(s * 1e3).toFixed(s < 0.01 ? 2 : s < 0.1 ? 1 : 0) + " ms";
  return +s.toFixed(2) + " s";
}
function bytes(b) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(b < 10 ? 1 : 0) : b) + " " + u[i];
}
function uptime(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  const p = (n) => String(n).padStart(2, "0");
  return d ? `${d}d ${h}h` : h ? `${h}h ${p(m)}m` : m ? `${m}m ${p(x)}s` : `${x}s`;
}
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], {hour12: false});

// quantile estimates a quantile from cumulative buckets [{le, count}] as
// Prometheus' histogram_quantile does (the node's Go code does the same).
function quantile(q, buckets, total) {
  if (!total || !buckets.length) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      const n = b.count - below;
      return n ? lower + ((b.le - lower) * (rank - below)) / n : b.le;
    }
    lower = b.le;
    below = b.count;
  }
  return buckets[buckets.length - 1].le;
}

// windowLatency: quantiles of the publications of the last LAT_WINDOW
// seconds, from the difference of two cumulative histograms.
function windowLatency(t) {
  const now = snaps[snaps.length - 1];
  let base = snaps[0];
  for (const s of snaps) if (s.t <= t - LAT_WINDOW) base = s;
  if (base === now || base.buckets.length !== now.buckets.length) return {n: 0, p50: null, p95: null, p99: null};
  const n = now.count - base.count;
  const d = now.buckets.map((b, i) => ({le: b.le, count: b.count - base.buckets[i].count}));
  return {n, p50: quantile(0.5, d, n), p95: quantile(0.95, d, n), p99: quantile(0.99, d, n)};
}

// ---- sign in and polling
// view shows the dashboard, or the sign-in form.
function view(dash) {
  for (const id of ["dash", "ident", "signout"]) $(id).hidden = !dash;
  $("login").hidden = dash;
}

function showLogin(message) {
  clearTimeout(timer);
  view(false);
  text("login-error", message || "");
  setStatus("", "signed out");
  $("key").focus();
}

function setStatus(cls, msg) {
  $("dot").className = "dot " + cls;
  text("status", msg);
}

function reset() {
  gen++;
  hist.length = 0;
  snaps.length = 0;
  prev = null;
}

async function poll() {
  clearTimeout(timer);
  const key = sessionStorage.getItem(KEY);
  if (!key) return showLogin();
  const g = gen;
  let res, body;
  try {
    res = await fetch("/admin/api/stats", {headers: {"X-API-Key": key}, signal: AbortSignal.timeout(5000)});
    body = await res.json().catch(() => ({}));
  } catch (e) {
    if (g === gen) down(`Cannot reach the node (${e.name === "TimeoutError" ? "timed out" : e.message}); retrying…`);
    return;
  }
  if (g !== gen) return; // signed out or in again meanwhile
  if (res.status === 401 || res.status === 403) {
    sessionStorage.removeItem(KEY);
    reset();
    const why = body.message || (res.status === 401 ? "the key is wrong" : "the key lacks the admin scope");
    return showLogin(res.status === 401 ? `Key refused (401): ${why}.` : `Not allowed (403): ${why}.`);
  }
  if (!res.ok) return down(`The node answered ${res.status}: ${body.message || res.statusText}; retrying…`);
  $("banner").hidden = true;
  try {
    update(body);
  } finally {
    timer = setTimeout(poll, 1000);
  }
}

function down(message) {
  text("banner", message);
  $("banner").hidden = false;
  setStatus("down", "offline");
  timer = setTimeout(poll, 2000);
}

// ---- one snapshot
function update(s) {
  const t = Date.parse(s.time) / 1000;
  if (prev && (s.node !== prev.node || s.uptime_seconds < prev.uptime)) reset(); // another node, or restarted
  view(true);
  text("node", s.node);
  text("region", s.region);
  text("uptime", uptime(s.uptime_seconds));
  document.title = `${s.node} · Switchyard admin`;
  setStatus("live", "live · " + clock(t));

  const tot = s.totals, by = s.sessions.by_transport;
  let r = {};
  if (prev) {
    const dt = Math.max(t - prev.t, 1e-3);
    const d = (k) => Math.max(tot[k] - prev.totals[k], 0) / dt;
    r = {in: d("messages_in"), out: d("messages_out"), del: d("deliveries"), pub: d("published"),
      bin: d("bytes_in"), bout: d("bytes_out"), cpu: Math.max(s.runtime.cpu_seconds - prev.cpu, 0) / dt};
  }
  snaps.push({t, buckets: s.latency.buckets, count: s.latency.count});
  while (snaps.length > 2 && snaps[1].t <= t - LAT_WINDOW - 2) snaps.shift();
  const lat = windowLatency(t);
  hist.push({t, in: r.in ?? null, out: r.out ?? null, del: r.del ?? null, p50: lat.p50, p95: lat.p95, p99: lat.p99,
    ws: by.websocket || 0, wt: by.webtransport || 0});
  while (hist.length && hist[0].t < t - SPAN) hist.shift();
  prev = {t, node: s.node, uptime: s.uptime_seconds, totals: tot, cpu: s.runtime.cpu_seconds};
  last = {t, s, r, lat};

  // cards
  text("sessions-total", num(s.sessions.total));
  const total = s.sessions.total || 1;
  const split = $("sessions-split");
  if (split.children.length !== 2) split.replaceChildren(el("span", {class: "ws"}), el("span", {class: "wt"}));
  split.children[0].style.width = ((by.websocket || 0) / total) * 100 + "%";
  split.children[1].style.width = ((by.webtransport || 0) / total) * 100 + "%";
  $("sessions-sub").replaceChildren(el("span", {class: "lg ws"}, "WebSocket ", el("b", {}, num(by.websocket || 0))),
    el("span", {class: "lg wt"}, "WebTransport ", el("b", {}, num(by.webtransport || 0))));
  text("channels", num(s.channels));
  text("channels-sub", r.pub == null ? "" : `${rate(r.pub)} publications/s`);
  text("rate-in", rate(r.in));
  text("in-sub", r.bin == null ? "" : `${bytes(r.bin)}/s`);
  text("rate-out", rate(r.out));
  text("out-sub", r.bout == null ? "" : `${bytes(r.bout)}/s`);
  text("rate-del", rate(r.del));
  text("del-sub", r.pub ? `×${(r.del / r.pub).toFixed(1)} fan-out` : "");
  bigDur($("lat-p50"), lat.p50);
  bigDur($("lat-p99"), lat.p99);
  text("p50-sub", lat.n ? `of ${num(lat.n)} in ${LAT_WINDOW} s` : s.latency.count ? "idle" : "no publications yet");
  text("p99-sub", lat.n ? `p95 ${dur(lat.p95)}` : s.latency.count ? `all-time ${dur(s.latency.p99_seconds)}` : "");

  draw();
  nodes(s);
  bars($("connects"), [["connected", s.connects.ok, "ok"],
    ...Object.entries(s.connects.refused).map(([k, v]) => [k, v, "bad", "refused"]),
    ...Object.entries(s.connects.abandoned).map(([k, v]) => [k, v, "warn", "abandoned"])]);
  bars($("disconnects"), Object.entries(s.disconnects).map(([k, v]) => [k, v, disconnectClass(k)]));
  runtime(s, r);
  window.admin.updates++;
  window.admin.last = s;
}

// bigDur shows a duration as a number and a smaller unit.
function bigDur(e, s) {
  const [v, u] = dur(s).split(" ");
  e.replaceChildren(v, u ? el("span", {class: "u"}, u) : null);
}

function disconnectClass(code) {
  if (["normal_closure", "client_going_away", "going_away"].includes(code)) return "ok";
  if (["slow_consumer", "internal_error", "connection_lost"].includes(code)) return "bad";
  return "warn";
}

// ---- charts
function swatch(k) {
  const i = el("i");
  i.style.background = C[k];
  return i;
}

const charts = {
  rate: {svg: "chart-rate", legend: "legend-rate", fmt: rate, floor: 1, area: true,
    series: [["in", "in"], ["out", "out"], ["del", "deliveries"]]},
  latency: {svg: "chart-latency", legend: "legend-latency", fmt: dur, floor: 0.001,
    series: [["p50", "p50"], ["p95", "p95"], ["p99", "p99"]]},
  sessions: {svg: "chart-sessions", legend: "legend-sessions", fmt: num, floor: 4, int: true, area: true,
    series: [["ws", "WebSocket"], ["wt", "WebTransport"]]},
};

function draw() {
  if (!last) return;
  for (const c of Object.values(charts)) {
    chart($(c.svg), c, last.t);
    const latest = hist[hist.length - 1] || {};
    $(c.legend).replaceChildren(...c.series.map(([k, name]) => el("span", {}, swatch(k), name + " ", el("b", {}, c.fmt(latest[k])))));
  }
}

// nice rounds v up to a top whose quarters read well; integral ones for
// counts.
function nice(v, int) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  let top = 10 * p;
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v * 0.999) { top = m * p; break; }
  return int ? Math.ceil(top / 4) * 4 : top;
}

const path = (pts) => pts.map(([a, b], i) => (i ? "L" : "M") + a.toFixed(1) + " " + b.toFixed(1)).join("");

function chart(svg, c, t1) {
  const W = Math.max(svg.clientWidth, 200), H = Math.max(svg.clientHeight, 120);
  const pad = {l: 54, r: 10, t: 8, b: 22};
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const t0 = t1 - SPAN;
  let max = 0;
  for (const p of hist) for (const [k] of c.series) if (p[k] != null) max = Math.max(max, p[k]);
  const top = nice(Math.max(max * 1.08, c.floor), c.int);
  const x = (t) => pad.l + ((t - t0) / SPAN) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / top) * (H - pad.t - pad.b);
  const kids = [];
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4, yy = Math.round(y(v)) + 0.5;
    kids.push(el("svg:line", {class: "grid", x1: pad.l, x2: W - pad.r, y1: yy, y2: yy}));
    kids.push(el("svg:text", {class: "axis", x: pad.l - 8, y: yy + 4, "text-anchor": "end"}, c.fmt(v)));
  }
  for (const s of [120, 90, 60, 30, 0]) {
    kids.push(el("svg:text", {class: "axis", x: x(t1 - s), y: H - 4, "text-anchor": s === 120 ? "start" : s ? "middle" : "end"},
      s ? `−${s >= 60 && s % 60 === 0 ? s / 60 + "m" : s + "s"}` : "now"));
  }
  let any = false;
  for (const [k] of c.series) {
    let d = "", seg = [];
    const segs = [];
    for (const p of hist) {
      if (p[k] == null) { if (seg.length) segs.push(seg); seg = []; continue; }
      seg.push([x(p.t), y(p[k])]);
    }
    if (seg.length) segs.push(seg);
    for (const s of segs) d += path(s);
    if (!d) continue;
    any = true;
    if (c.area) {
      const id = `g-${svg.id}-${k}`;
      const g = el("svg:linearGradient", {id, x1: 0, x2: 0, y1: 0, y2: 1},
        el("svg:stop", {offset: "0%", "stop-color": C[k], "stop-opacity": 0.28}),
        el("svg:stop", {offset: "100%", "stop-color": C[k], "stop-opacity": 0}));
      kids.push(el("svg:defs", {}, g));
      for (const s of segs) {
        if (s.length < 2) continue;
        kids.push(el("svg:path", {class: "area", d: path([...s, [s.at(-1)[0], y(0)], [s[0][0], y(0)]]) + "Z", fill: `url(#${id})`}));
      }
    }
    kids.push(el("svg:path", {class: "line", "data-series": k, d, stroke: C[k]}));
    const end = segs[segs.length - 1].at(-1);
    kids.push(el("svg:circle", {cx: end[0], cy: end[1], r: 3.5, fill: C[k], stroke: "#0a0f1e", "stroke-width": 2}));
  }
  if (!any) {
    kids.push(el("svg:text", {class: "empty", x: (W + pad.l) / 2, y: H / 2, "text-anchor": "middle"},
      c === charts.latency ? "no publications in the last 10 s" : "collecting…"));
  }
  const cursor = el("svg:line", {class: "cursor", y1: pad.t, y2: H - pad.b, visibility: "hidden"});
  kids.push(cursor);
  svg.replaceChildren(...kids);
  svg.onmousemove = (e) => hover(e, svg, c, cursor, x, W, pad);
  svg.onmouseleave = () => { cursor.setAttribute("visibility", "hidden"); tip.hidden = true; };
}

// ---- hover read-out
const tip = el("div", {class: "tip", hidden: ""});
function hover(e, svg, c, cursor, x, W, pad) {
  if (!hist.length) return;
  const box = svg.getBoundingClientRect();
  const px = ((e.clientX - box.left) / box.width) * W;
  let best = hist[0];
  for (const p of hist) if (Math.abs(x(p.t) - px) < Math.abs(x(best.t) - px)) best = p;
  const bx = x(best.t);
  if (bx < pad.l - 2) return;
  cursor.setAttribute("x1", bx);
  cursor.setAttribute("x2", bx);
  cursor.setAttribute("visibility", "visible");
  tip.replaceChildren(el("div", {class: "muted"}, clock(best.t)),
    ...c.series.map(([k, name]) => el("div", {}, swatch(k), `${name}: ${c.fmt(best[k])}`)));
  tip.hidden = false;
  tip.style.left = Math.min(e.clientX + 14, innerWidth - 170) + "px";
  tip.style.top = e.clientY + 14 + "px";
}

// ---- tables
function nodes(s) {
  const byRegion = Object.groupBy(s.nodes, (n) => n.region);
  const rows = [];
  for (const region of Object.keys(byRegion).sort()) {
    const list = byRegion[region].sort((a, b) => a.name.localeCompare(b.name));
    const draining = list.filter((n) => n.draining).length;
    rows.push(el("tr", {}, el("th", {colspan: 3}, `${region} · ${list.length} node${list.length > 1 ? "s" : ""}` + (draining ? ` · ${draining} draining` : ""))));
    for (const n of list) {
      const urls = Object.keys(n.urls || {}).sort().map((k) => el("span", {class: "chip", title: n.urls[k]}, k));
      rows.push(el("tr", {class: "node-row"},
        el("td", {}, n.name, n.self ? el("span", {class: "me"}, "this node") : null),
        el("td", {}, el("span", {class: "badge " + (n.draining ? "draining" : "alive")}, n.draining ? "draining" : "alive")),
        el("td", {}, ...urls)));
    }
  }
  $("nodes").replaceChildren(...rows);
  const m = s.mesh;
  $("mesh-box").hidden = !m;
  if (!m) return;
  const members = Object.keys(m.members).sort().map((region) => {
    const st = m.members[region];
    return [`members in ${region}`, Object.keys(st).sort().map((k) => `${st[k]} ${k}`).join(", ")];
  });
  kv("mesh", [...members,
    ["links out · in", `${m.links.out_up || 0} up` + (m.links.out_connecting ? ` (${m.links.out_connecting} connecting)` : "") + ` · ${m.links.in_up || 0} up`],
    ["health score", m.health_score === 0 ? "0 (healthy)" : String(m.health_score)],
    ["link queue", num(m.link_queue_messages) + " messages"],
    ["forwarded · received", `${num(m.forwarded)} · ${num(m.received)}`],
    ["request p50 · p99", `${dur(m.request_p50_seconds)} · ${dur(m.request_p99_seconds)}`],
    ["link overflows", num(m.link_overflows)],
  ]);
}

function bars(box, items) {
  items = items.filter((i) => i[1] > 0).sort((a, b) => b[1] - a[1]).slice(0, 8);
  if (!items.length) return box.replaceChildren(el("div", {class: "none"}, "none yet"));
  const max = items[0][1];
  box.replaceChildren(...items.map(([name, v, cls, what]) => {
    const fill = el("div", {class: "fill " + cls});
    fill.style.width = (v / max) * 100 + "%";
    return el("div", {class: "bar"}, el("span", {class: "label"}, name.replaceAll("_", " "), what ? el("em", {}, what) : null),
      el("span", {class: "n"}, num(v)), el("div", {class: "track"}, fill));
  }));
}

const kv = (id, pairs) => $(id).replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

function runtime(s, r) {
  const rt = s.runtime, q = s.queues, t = s.totals;
  kv("traffic", [
    ["messages in · out", `${num(t.messages_in)} · ${num(t.messages_out)}`],
    ["bytes in · out", `${bytes(t.bytes_in)} · ${bytes(t.bytes_out)}`],
    ["deliveries", num(t.deliveries)],
    ["publications sequenced", num(t.published)],
    ["send queues now", `${num(q.frames)} frames · ${bytes(q.bytes)}`],
    ["deepest queue", num(q.max_frames)],
    ["volatile dropped", num(t.volatile_dropped)],
    ["error frames · resyncs", `${num(t.error_frames)} · ${num(t.resyncs)}`],
  ]);
  kv("runtime", [
    ["Go", rt.go_version || "—"],
    ["goroutines", num(rt.goroutines)],
    ["heap", bytes(rt.heap_alloc_bytes)],
    ["resident memory", rt.resident_bytes ? bytes(rt.resident_bytes) : "—"],
    ["CPU", r.cpu == null ? "—" : (r.cpu * 100).toFixed(1) + " %"],
    ["open files", rt.open_fds ? num(rt.open_fds) : "—"],
    ["GC cycles", num(rt.gc_cycles)],
  ]);
}

// ---- start
function start() {
  document.body.append(tip);
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("key").value = "";
    text("login-error", "");
    reset();
    setStatus("", "connecting…");
    poll();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    reset();
    showLogin();
  });
  let resize = 0;
  addEventListener("resize", () => { cancelAnimationFrame(resize); resize = requestAnimationFrame(draw); });
  if (sessionStorage.getItem(KEY)) poll();
  else showLogin();
  window.ready = true;
}
start();
