// The escalation board page: polls /api/board every 2 s and counts down every second.
// SLA warnings are heads-ups, listed apart; the feed comes in event-time order, latest first.
// Plain DOM code, no framework; every value goes in through textContent, never as HTML.
"use strict";

const POLL_MS = 2000;
let board = null;      // the last /api/board answer
let fetchedAt = 0;     // Date.now() when it arrived

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...(rows.length ? rows : [
    el("tr", {}, el("td", { class: "empty", colSpan: columns }, emptyText)),
  ]));
}

function utc(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toISOString().slice(5, 16).replace("T", " ");
}

function number(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

// Now, as the countdowns see it: the wall clock on a live board, the board clock otherwise.
function referenceNow() {
  if (!board) return Date.now();
  if (board.clock_mode === "wall") return board.now + (Date.now() - fetchedAt);
  return board.clock;
}

function span(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (x) => String(x).padStart(2, "0");
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${pad(m)}m`;
  return `${m}m ${pad(sec)}s`;
}

function countdown(deadline) {
  const node = el("span", { class: "countdown", "data-deadline": deadline ?? "" });
  tick(node);
  return node;
}

function tick(node) {
  const deadline = node.getAttribute("data-deadline");
  if (!deadline) { node.textContent = "–"; return; }
  const left = Number(deadline) - referenceNow();
  node.textContent = left < 0 ? `overdue ${span(left)}` : span(left);
  node.classList.toggle("overdue", left < 0);
  node.classList.toggle("soon", left >= 0 && left < 15 * 60000);
}

function level(n) {
  return el("span", { class: `level l${Math.min(Math.max(n, 1), 7)}` }, `L${n}`);
}

function priority(p) {
  return p ? el("span", { class: `prio-${p}` }, p) : "";
}

function bars(tbody, counts, attr, label, emptyText) {
  const entries = Object.entries(counts);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  fill(tbody, entries.map(([name, n]) => el("tr", { [attr]: name },
    el("td", { class: "name", title: label(name) }, label(name)),
    el("td", {}, el("div", { class: "bar", style: `width:${(100 * n) / max}%` })),
    el("td", { class: "n" }, number(n)),
  )), 3, emptyText);
}

function renderHealth(health) {
  const describe = {
    redis: (h) => h.error || "board store",
    sink: (h) => h.heartbeat_age_ms === undefined ? "no heartbeat"
      : `heartbeat ${Math.round(h.heartbeat_age_ms / 1000)} s ago, ${number(h.lag)} behind`,
    worker: (h) => h.url ? `${h.url} (${h.status})` : "no worker URL configured",
  };
  for (const name of ["redis", "sink", "worker"]) {
    const h = health[name] || { status: "unknown" };
    const node = document.getElementById(`health-${name}`);
    node.setAttribute("data-status", h.status);
    node.textContent = `${name[0].toUpperCase()}${name.slice(1)}: ${h.status}`;
    node.title = describe[name](h);
  }
}

function render(data) {
  board = data;
  fetchedAt = Date.now();
  renderHealth(data.health);
  const notice = document.getElementById("notice");
  const clock = document.getElementById("clock");
  if (data.clock_mode === "wall") {
    clock.textContent = `live · ${new Date(data.now).toISOString().slice(0, 19).replace("T", " ")} UTC`;
    notice.hidden = true;
  } else {
    clock.textContent = `board clock ${new Date(data.clock).toISOString().slice(0, 16).replace("T", " ")} UTC`;
    notice.textContent = "This board shows a replayed history: countdowns run from the board clock "
      + "(the latest escalation time), not from now.";
    notice.hidden = false;
  }
  if (data.health.redis.status !== "up") {
    notice.textContent = `Redis is unreachable: ${data.health.redis.error || ""}`;
    notice.hidden = false;
  }
  const hour = data.last_hour || {};
  document.getElementById("count-open").textContent = number(data.open);
  const warnings = data.warnings || { open: 0, tickets: [] };
  document.getElementById("count-warnings").textContent = number(warnings.open);
  document.getElementById("breaches-hour").textContent = number(hour.breaches ?? 0);
  document.getElementById("escalations-hour").textContent = number(hour.escalations ?? 0);
  document.getElementById("breach-share").textContent =
    hour.breach_share === null || hour.breach_share === undefined ? "–" : `${(100 * hour.breach_share).toFixed(0)}%`;
  const live = data.health.worker.breaches_per_hour;
  document.getElementById("breach-rate-live").textContent =
    live === null || live === undefined ? "–" : live.toFixed(1);
  document.getElementById("sink-lag").textContent = number(data.health.sink.lag);

  bars(document.querySelector("#by-level tbody"), data.by_level, "data-level", (v) => `L${v}`,
       "no open escalations");
  bars(document.querySelector("#by-team tbody"), data.by_team, "data-team", (t) => t,
       "no open escalations");

  fill(document.querySelector("#closest tbody"), data.closest.map((e) => el("tr", { "data-ticket": e.ticket_id },
    el("td", { class: "ticket" }, e.ticket_id),
    el("td", {}, countdown(e.climbs_at)),
    el("td", {}, level(e.level)),
    el("td", { title: e.target }, e.target),
    el("td", { title: e.rule }, e.reason),
    el("td", {}, priority(e.priority)),
  )), 6, "nothing is about to climb");

  fill(document.querySelector("#open-escalations tbody"), data.tickets.map((e) => el("tr", {
    "data-ticket": e.ticket_id, "data-level": e.level, "data-team": e.target,
    "data-escalation": e.escalation_id,
  },
    el("td", { class: "ticket" }, e.ticket_id),
    el("td", {}, level(e.level)),
    el("td", { title: e.target }, e.target),
    el("td", { title: e.rule }, e.reason),
    el("td", {}, e.kind.toLowerCase()),
    el("td", {}, utc(e.due_at)),
    el("td", {}, number(e.open_escalations)),
    el("td", {}, priority(e.priority)),
    el("td", {}, countdown(e.climbs_at)),
  )), 9, "no open escalations");
  document.getElementById("open-note").textContent = data.open > data.tickets.length
    ? `latest ${data.tickets.length} of ${number(data.open)}` : "latest first";

  fill(document.querySelector("#warnings tbody"), warnings.tickets.map((w) => el("tr", {
    "data-ticket": w.ticket_id, "data-escalation": w.escalation_id,
  },
    el("td", { class: "ticket" }, w.ticket_id),
    el("td", { title: w.target }, w.target),
    el("td", { title: w.rule }, w.rule),
    el("td", {}, utc(w.due_at)),
    el("td", {}, number(w.open_warnings)),
  )), 5, "no open SLA warnings");

  renderShadow(data.health.worker.shadow);

  const totals = data.totals || {};
  const figures = data.health.worker.figures || {};
  const facts = [
    ["escalations on the board, all time", totals.escalations],
    ["SLA warnings, all time", totals.warnings],
    ["priority bumps", totals.bumps],
    ["tickets resolved off the board", totals.resolved],
    ...Object.entries(figures).map(([name, v]) => [`worker: ${name}`, v]),
  ];
  fill(document.querySelector("#pipeline tbody"), facts.map(([name, v]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, number(v ?? 0)))), 2, "");

  const feed = document.getElementById("feed");
  const items = data.recent.map((r) => {
    let text;
    if (r.type === "escalation") text = `${r.ticket_id} → L${r.level} ${r.target} (${r.reason})`;
    else if (r.type === "warning") text = `${r.ticket_id} SLA warning to ${r.target} (${r.rule})`;
    else if (r.type === "priority_bump") text = `${r.ticket_id} priority ${r.old_priority} → ${r.new_priority}`;
    else text = `${r.ticket_id} resolved, off the board`;
    return el("li", { "data-type": r.type }, el("span", { class: "t" }, `${utc(r.at ?? null)} `), text);
  });
  feed.replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "no events yet")]));
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// The worker's shadow policy against production: hidden when the worker runs none.
function renderShadow(shadow) {
  const panel = document.getElementById("shadow-panel");
  panel.hidden = !shadow;
  if (!shadow) return;
  const only = shadow.only || {};
  document.getElementById("shadow-only").textContent =
    `tickets escalated by production only: ${number(only.production ?? 0)} · ` +
    `by the shadow policy only: ${number(only.shadow ?? 0)}`;
  fill(document.querySelector("#shadow tbody"), shadow.by_reason_level.map((r) => {
    const diff = r.shadow - r.production;
    return el("tr", { "data-diff": Math.sign(diff) },
      el("td", {}, r.reason), el("td", {}, level(r.level)),
      el("td", {}, number(r.production)), el("td", {}, number(r.shadow)),
      el("td", {}, `${diff > 0 ? "+" : ""}${number(diff)}`));
  }), 5, "no escalations yet");
}

async function poll() {
  try {
    const response = await fetch("/api/board", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (error) {
    for (const name of ["redis", "sink", "worker"]) {
      const node = document.getElementById(`health-${name}`);
      node.setAttribute("data-status", "unknown");
    }
    document.getElementById("updated").textContent = `board API unreachable (${error.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

setInterval(() => document.querySelectorAll(".countdown").forEach(tick), 1000);
poll();
