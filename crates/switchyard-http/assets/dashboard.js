// Switchyard's dashboard: the running graph (laid out by dagre), live
// counters pushed over Server-Sent Events, and the switches' controls.
// Everything it talks to is /api/v1 on the server that served it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "switchyard-token";

const state = {
  token: null,
  scope: null, // "read" | "write" | null (unknown)
  graphKey: null, // boot and configuration generation of the graph drawn
  graph: null,
  prev: null, // the snapshot before the last, for rates
  controls: new Map(), // "element.handler" -> DOM block
  busy: false,
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function fmt(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return String(Math.round(n));
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function problem(text) {
  const p = $("problem");
  p.textContent = text || "";
  p.hidden = !text;
}

// --- the token: from the URL's fragment once (the demo prints such a
// URL; a fragment never reaches a server or its logs), else typed in;
// kept for the browser session.
function loadToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(method, path, body, extra) {
  const r = await fetch("/api/v1/" + path, { method, headers: headers(extra), body });
  let j = null;
  try { j = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = j && j.error ? j.error.message : r.status + " " + r.statusText;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return j;
}

async function whoami() {
  try {
    const w = await api("GET", "whoami");
    state.scope = w.scope;
    $("scope").textContent = w.token
      ? `token ${w.token} (${w.scope})`
      : (w.scope === "write" ? "" : "read-only: start the router with --http-tokens and use a write token to control it");
    problem("");
  } catch (e) {
    state.scope = null;
    $("scope").textContent = "";
    problem(e.status === 401 ? "This router needs a token: " + e.message : "Cannot reach the router: " + e.message);
  }
  applyScope();
}

function applyScope() {
  const can = state.scope === "write";
  document.querySelectorAll("button.write, input.write").forEach((b) => {
    b.disabled = !can || state.busy;
    b.title = can ? "" : "needs a write token";
  });
}

// --- the graph
async function loadGraph() {
  const g = await api("GET", "graph");
  state.graph = g;
  state.graphKey = `${g.boot}/${g.config_generation}`;
  drawGraph(g);
  state.controls.clear();
  $("controls").replaceChildren();
  // A question asked about the old graph is not one about this one.
  const dialog = $("confirm");
  if (dialog.open) { dialog.returnValue = "cancel"; dialog.close(); }
}

function drawGraph(g) {
  const dg = new dagre.graphlib.Graph({ multigraph: true });
  dg.setGraph({ rankdir: "LR", nodesep: 20, ranksep: 50, marginx: 10, marginy: 10 });
  dg.setDefaultEdgeLabel(() => ({}));
  for (const e of g.elements) dg.setNode(e.name, { width: 150, height: 48 });
  g.wires.forEach((w, i) => dg.setEdge(w.from, w.to, {}, "w" + i));
  dagre.layout(dg);
  const root = $("graph");
  root.replaceChildren();
  const size = dg.graph();
  root.setAttribute("viewBox", `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`);
  root.setAttribute("width", Math.ceil(size.width));
  root.setAttribute("height", Math.ceil(size.height));
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#57606a" }));
  defs.append(marker);
  root.append(defs);
  g.wires.forEach((w, i) => {
    const pts = dg.edge(w.from, w.to, "w" + i).points;
    const d = pts.map((p, k) => (k ? "L" : "M") + p.x.toFixed(1) + "," + p.y.toFixed(1)).join(" ");
    const path = svg("path", { d, class: "wire", "marker-end": "url(#arrow)", "data-wire": String(i) });
    const t = svg("title");
    t.textContent = `${w.from}[${w.from_port}] -> [${w.to_port}]${w.to}`;
    path.append(t);
    root.append(path);
  });
  for (const e of g.elements) {
    const n = dg.node(e.name);
    const grp = svg("g", { class: "node", "data-element": e.name, transform: `translate(${(n.x - n.width / 2).toFixed(1)},${(n.y - n.height / 2).toFixed(1)})` });
    grp.append(svg("rect", { width: n.width, height: n.height }));
    const title = svg("text", { x: 8, y: 18, class: "title" });
    title.textContent = e.name.length > 20 ? e.name.slice(0, 19) + "…" : e.name;
    const cls = svg("text", { x: 8, y: 34, class: "class" });
    // An element run as copies (Copies(N)) is one node: its counts are
    // the copies' sums.
    const copies = e.copies > 1 ? ` \u00d7${e.copies}` : "";
    cls.textContent = e.class + copies;
    const count = svg("text", { x: n.width - 8, y: 34, class: "count", "text-anchor": "end" });
    const full = svg("title");
    full.textContent = `${e.name} :: ${e.class}${copies}`;
    grp.append(full, title, cls, count);
    root.append(grp);
  }
}

// --- a snapshot from the event stream
async function onSnapshot(s) {
  const key = `${s.boot}/${s.config_generation}`;
  if (key !== state.graphKey) {
    await loadGraph();
    state.prev = null;
    // A reload between this snapshot and the graph: wait for the next.
    if (key !== state.graphKey) return;
  }
  $("config").textContent = `configuration generation ${s.config_generation}`;
  const standby = new Set(s.standby);
  const dt = state.prev ? s.t - state.prev.t : 0;
  document.querySelectorAll("#graph .node").forEach((n) => {
    const name = n.getAttribute("data-element");
    n.classList.toggle("standby", standby.has(name));
    const c = Object.hasOwn(s.counts, name) ? s.counts[name] : undefined;
    const text = n.querySelector(".count");
    if (typeof c !== "number") { text.textContent = ""; return; }
    n.setAttribute("data-count", String(c));
    let label = fmt(c);
    if (dt > 0 && Object.hasOwn(state.prev.counts, name)) {
      const rate = Math.max(0, c - state.prev.counts[name]) / dt;
      n.setAttribute("data-rate", rate.toFixed(1));
      label += " · " + fmt(rate) + "/s";
    }
    text.textContent = label;
  });
  document.querySelectorAll("#graph .wire").forEach((w) => {
    const live = s.wires_live[Number(w.getAttribute("data-wire"))];
    w.classList.toggle("standby", !live);
  });
  const selectors = new Set(s.controls.map((c) => c.element));
  document.querySelectorAll("#graph .node").forEach((n) => n.classList.toggle("selector", selectors.has(n.getAttribute("data-element"))));
  renderControls(s.controls);
  renderGates(s.gates);
  renderReload(s.last_reload);
  renderAudit(s.audit);
  state.prev = s;
}

// The name of what feeds (or takes) a selector's position, for labels:
// through a ShadowCompare (input N is output N) to the branch itself.
function neighbour(element, port, inputs) {
  if (!state.graph) return null;
  for (let hops = 0; hops < 8; hops++) {
    const w = state.graph.wires.find((w) => inputs ? (w.to === element && w.to_port === port) : (w.from === element && w.from_port === port));
    if (!w) return null;
    const next = inputs ? w.from : w.to;
    const cls = (state.graph.elements.find((e) => e.name === next) || {}).class;
    if (cls !== "ShadowCompare") return next;
    [element, port] = [next, inputs ? w.from_port : w.to_port];
  }
  return null;
}

function positionsOf(c) {
  const inputs = c.inputs > 1;
  const n = inputs ? c.inputs : c.outputs;
  const names = [];
  for (let p = 0; p < n; p++) names.push(neighbour(c.element, p, inputs) || `port ${p}`);
  return names;
}

function renderControls(list) {
  const box = $("controls");
  if (!list.length) { box.replaceChildren(el("p", { class: "empty" }, "none")); return; }
  box.querySelectorAll(".empty").forEach((e) => e.remove());
  for (const c of list) {
    const key = `${c.element}.${c.handler}`;
    let block = state.controls.get(key);
    if (!block) {
      block = c.handler === "switch" ? switchBlock(c) : canaryBlock(c);
      state.controls.set(key, block);
      box.append(block);
    }
    block.update(c);
  }
  applyScope();
}

// The frame every control shares: the element, its value and
// generation, and its buttons. `show(c, value)` writes the value shown;
// `block.current` is the latest state, which the buttons write against.
function controlBlock(c, label, buttons, show) {
  const value = el("span", { class: "value" });
  const gen = el("span", { class: "generation" });
  const block = el("div", { class: "control", "data-element": c.element, "data-handler": c.handler },
    el("div", {}, el("span", { class: "name" }, `${c.element}`), ` :: ${c.class} `),
    el("div", {}, label, value, " · generation ", gen),
    buttons);
  block.current = c;
  block.update = (c2) => {
    block.current = c2;
    show(c2, value);
    value.setAttribute("data-value", c2.value);
    gen.textContent = String(c2.generation);
    block.setAttribute("data-generation", String(c2.generation));
  };
  return block;
}

function switchBlock(c) {
  const names = positionsOf(c);
  const buttons = el("div", { class: "buttons" });
  for (let p = 1; p < names.length; p++) {
    const b = el("button", { class: "golive write", type: "button", "data-element": c.element, "data-position": String(p) },
      names.length > 2 ? `Go live: ${names[p]}` : "Go live");
    b.addEventListener("click", () => confirmWrite(block.current, String(p),
      `Send production traffic through ${names[p]} (${c.element}.switch ${p})?`));
    buttons.append(b);
  }
  const back = el("button", { class: "back write", type: "button", "data-element": c.element }, "Back");
  back.addEventListener("click", () => confirmWrite(block.current, "0", block.current.pinned
    ? `Roll back: new flows through ${names[0]} (${c.element}.switch 0)? Established flows stay on their branch until they end (${c.element}.force moves them too).`
    : `Roll back: production traffic through ${names[0]} (${c.element}.switch 0)?`));
  buttons.append(back);
  const block = controlBlock(c, "production: ", buttons, (c2, value) => {
    const pos = Number(c2.value);
    value.textContent = pos < 0 ? "nothing (-1: dropping)" : `${names[pos] || "port " + pos} (${pos})`;
  });
  return block;
}

function canaryBlock(c) {
  const names = positionsOf(c);
  const buttons = el("div", { class: "buttons" });
  // Two positions: one slider, the new branch's share in percent. More:
  // the weights as text.
  let slider = null;
  let text = null;
  if (names.length === 2) {
    const shown = el("span", { class: "share" });
    slider = el("input", { type: "range", min: 0, max: 100, step: 1, class: "write", "data-element": c.element });
    slider.addEventListener("input", () => { shown.textContent = `${slider.value}% to ${names[1]}`; slider.dataset.dirty = "1"; });
    slider.addEventListener("change", () => confirmWrite(block.current, `${100 - Number(slider.value)} ${slider.value}`,
      `Send ${slider.value}% of flows through ${names[1]} (${c.element}.weights ${100 - Number(slider.value)} ${slider.value})?`,
      () => { delete slider.dataset.dirty; slider.blur(); block.update(block.current); }));
    buttons.append(slider, shown);
  } else {
    text = el("input", { type: "text", size: 12, class: "write" });
    const apply = el("button", { class: "write", type: "button" }, "Apply");
    apply.addEventListener("click", () => confirmWrite(block.current, text.value.trim(), `Set ${c.element}.weights ${text.value.trim()}?`));
    buttons.append(text, apply);
  }
  const back = el("button", { class: "back write", type: "button", "data-element": c.element }, "Back");
  back.addEventListener("click", () => {
    const w = names.map((_, i) => (i === 0 ? 100 : 0)).join(" ");
    confirmWrite(block.current, w, `Roll back: every flow through ${names[0]} (${c.element}.weights ${w})?`);
  });
  buttons.append(back);
  const block = controlBlock(c, "weights: ", buttons, (c2, value) => {
    const w = c2.value.split(/\s+/).map(Number);
    const sum = w.reduce((a, b) => a + b, 0) || 1;
    value.textContent = w.map((x, i) => `${names[i]} ${Math.round((100 * x) / sum)}%`).join(", ");
    if (slider && !slider.dataset.dirty && document.activeElement !== slider) {
      slider.value = String(Math.round((100 * (w[1] || 0)) / sum));
      slider.nextSibling.textContent = `${slider.value}% to ${names[1]}`;
    }
    if (text && document.activeElement !== text) text.value = c2.value;
  });
  return block;
}

// Asks, then writes at the generation shown (a write someone else made
// meanwhile makes this one fail rather than silently undo theirs).
function confirmWrite(c, value, question, after) {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  $("confirm-yes").textContent = question.startsWith("Roll back") ? "Roll back" : "Confirm";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (after) after();
    if (dialog.returnValue !== "ok") return;
    await write(c, value);
  };
  dialog.showModal();
}

async function write(c, value) {
  const handler = `${c.element}.${c.handler}`;
  const result = $("result");
  state.busy = true;
  applyScope();
  result.className = "";
  result.textContent = `writing ${handler} ${value}...`;
  try {
    const r = await api("PUT", `elements/${encodeURIComponent(c.element)}/${encodeURIComponent(c.handler)}`, value,
      { "If-Match": String(c.generation), "Content-Type": "text/plain" });
    result.className = "ok";
    result.textContent = `${handler} = ${value}: done, generation ${r.generation}`;
    result.setAttribute("data-generation", String(r.generation));
  } catch (e) {
    result.className = "error";
    result.textContent = `${handler} ${value} refused: ${e.message}`;
    result.removeAttribute("data-generation");
  } finally {
    state.busy = false;
    applyScope();
  }
}

function renderGates(list) {
  const box = $("gates");
  if (!list.length) { box.replaceChildren(el("p", { class: "empty" }, "none")); return; }
  box.replaceChildren(...list.map((g) => el("div", { class: "gate" + (g.tripped ? " tripped" : ""), "data-element": g.element },
    `${g.element} :: ${g.class}: `,
    g.tripped ? `tripped: ${g.reason}` : `watching (${g.checks ?? 0} checks)`)));
}

function renderReload(r) {
  const p = $("reload");
  if (!r) { p.className = "empty"; p.textContent = "none since start"; return; }
  p.className = "";
  p.textContent = `threads kept ${r.threads_kept}, replaced ${r.threads_replaced}, started ${r.threads_started}; traffic paused ${r.pause_us} µs`;
}

function renderAudit(entries) {
  const list = $("audit");
  const items = entries.slice().reverse().map((e) => {
    if (typeof e !== "object") return el("li", {}, String(e));
    const who = e.actor ? `${e.actor}${e.reason ? " (" + e.reason + ")" : ""}` : (e.peer && e.peer.addr) || (e.peer && e.peer.pid ? "pid " + e.peer.pid : "");
    const what = e.handler ? `${e.handler}: ${e.old ?? ""} → ${e.new ?? ""}` : JSON.stringify(e);
    const li = el("li", { class: e.result === "error" ? "error" : "" },
      `${(e.time || "").replace("T", " ").slice(0, 19)} ${what} ${who}${e.result === "error" ? " refused: " + (e.error || "") : ""}`);
    return li;
  });
  list.replaceChildren(...items);
}

// --- the event stream: text/event-stream read through fetch, so that it
// can carry the bearer token (EventSource cannot send headers).
async function stream() {
  for (;;) {
    try {
      const r = await fetch("/api/v1/events", { headers: headers(), cache: "no-store" });
      if (!r.ok) {
        let msg = r.status + " " + r.statusText;
        try { const j = await r.json(); msg = j.error.message; } catch (_) { /* keep */ }
        throw new Error(msg);
      }
      setConn("live", "live");
      state.graphKey = null; // a new connection may be to a new router
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (data) await onSnapshot(JSON.parse(data));
        }
      }
      setConn("down", "disconnected; retrying");
    } catch (e) {
      setConn("down", "no connection: " + e.message);
    }
    await sleep(1000);
  }
}

function setConn(cls, text) {
  const c = $("conn");
  c.className = "conn " + cls;
  c.textContent = text;
}

function main() {
  loadToken();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    location.reload();
  });
  whoami();
  stream();
}

main();
