// qbs_lab live view: reads the JSON API (GET only) and redraws at most about once a second.
"use strict";

const state = { follow: true, outer: null, runId: null, source: null, lastDraw: 0, timer: null, busy: false, again: false };
const MIN_REDRAW_MS = 1000;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

// -- numbers with units ------------------------------------------------------------------------------
const UNIT = { Ohm: "Ω", K: "K", T: "T", V: "V", A: "A", s: "s", W: "W", dBm: "dBm" };
const PREFIX = [[1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "µ"], [1e-9, "n"], [1e-12, "p"], [1e-15, "f"]];
function prefixFor(v) {
  const a = Math.abs(v);
  if (!isFinite(a) || a === 0) return [1, ""];
  for (const p of PREFIX) if (a >= p[0] * 0.9995) return p;
  return PREFIX[PREFIX.length - 1];
}
function si(v, unit, digits = 4) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const u = UNIT[unit] ?? unit ?? "";
  if (u === "" || u === "dBm") return `${(+v).toPrecision(digits).replace(/\.?0+(e|$)/, "$1")} ${u}`.trim();
  const [f, p] = prefixFor(v);
  return `${(+(v / f).toPrecision(digits))} ${p}${u}`;
}
function siErr(v, err, unit) {
  if (v === null || v === undefined) return "–";
  if (err === null || err === undefined || !isFinite(err)) return si(v, unit);
  const [f, p] = prefixFor(v);
  return `${+(v / f).toPrecision(5)} ± ${+(err / f).toPrecision(2)} ${p}${UNIT[unit] ?? unit}`;
}
function dur(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (d ? `${d} d ` : "") + `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}`;
}
// an axis in a readable unit: B in mT, T in mK, V_g in V
function axisScale(unit, values) {
  const finite = (values || []).filter((v) => isFinite(v));
  const top = finite.length ? Math.max(...finite.map(Math.abs)) : 1;
  const [f, p] = prefixFor(top);
  return { f, label: `${p}${UNIT[unit] ?? unit ?? ""}` };
}
const scaled = (xs, f) => (xs || []).map((x) => (x === null ? null : x / f));
const NAMES = { T: "T", B: "B", V_g: "V_g", P_rf: "P_rf", I_exc: "I_exc" };

// -- fetching ----------------------------------------------------------------------------------------
async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function schedule() {
  // redraws capped near 1 Hz: a change within a second of the last redraw waits for the rest of it
  if (state.timer) return;
  const wait = Math.max(0, state.lastDraw + MIN_REDRAW_MS - Date.now());
  state.timer = setTimeout(() => { state.timer = null; refresh(); }, wait);
}

async function refresh() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.lastDraw = Date.now();
  try {
    const [runs, queue] = await Promise.all([get("/api/runs"), get("/api/queue")]);
    if (state.follow || !state.runId) {
      const running = runs.find((r) => r.status === "running");
      const pick = running || runs[0];
      const id = pick ? pick.run_id : null;
      if (id !== state.runId) { state.runId = id; state.outer = null; connect(); }
    }
    drawRuns(runs);
    drawQueue(queue);
    if (state.runId) {
      const [run, data] = await Promise.all([get(`/api/runs/${state.runId}`), get(`/api/runs/${state.runId}/data${state.outer !== null ? `?outer=${state.outer}` : ""}`)]);
      drawRun(run);
      drawPlots(run, data);
    }
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.updates = String(+(document.body.dataset.updates || 0) + 1);
  } catch (err) {
    $("updated").textContent = `update failed: ${err.message}`;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; schedule(); }
  }
}

function connect() {
  if (state.source) state.source.close();
  const q = state.follow ? "" : `?run=${encodeURIComponent(state.runId)}`;
  const src = new EventSource(`/api/events${q}`);
  src.addEventListener("change", schedule);
  src.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
  src.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "conn off"; };
  state.source = src;
}

// -- the side bar ------------------------------------------------------------------------------------
function drawRuns(runs) {
  const rows = runs.map((r) => `<tr data-id="${esc(r.run_id)}" class="${r.run_id === state.runId ? "sel" : ""}">
    <td class="num">${esc(r.run_id)}</td><td>${esc(r.procedure)}</td><td class="st-${esc(r.status)}">${esc(r.status)}</td>
    <td class="num">${r.points_done}/${r.points_total}</td><td class="num">${dur(r.fridge_time_s)}</td></tr>`);
  $("runs").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="5" class="muted">no runs in this data directory yet</td></tr>`;
  for (const tr of $("runs").tBodies[0].rows) {
    tr.onclick = () => { state.follow = false; $("follow").checked = false; state.runId = tr.dataset.id; state.outer = null; connect(); refresh(); };
  }
}

function drawQueue(q) {
  const items = q.items || [];
  $("queue").tBodies[0].innerHTML = items.map((i) => `<tr>
    <td class="num">${i.position}</td><td title="${esc(i.settings.join(" "))}">${esc(i.procedure)}</td>
    <td class="st-${esc(i.status)}" title="${esc(i.message || "")}">${esc(i.status)}</td><td class="num">${esc(i.run_id ?? "")}</td>
    <td class="num" title="${esc(i.estimate_note || "")}">${i.estimate_s !== null ? dur(i.estimate_s) : esc(i.estimate_note ? (i.estimate_note === "estimating" ? "estimating…" : "–") : "–")}</td>
    <td class="num">${i.left_s !== null ? dur(i.left_s) : "–"}</td></tr>`).join("");
  if (!items.length) { $("night").textContent = "the queue is empty"; return; }
  const left = items.filter((i) => i.status === "pending" || i.status === "running").length;
  if (!left) { $("night").textContent = "every item has run"; return; }
  if (q.finish) {
    const f = new Date(q.finish);
    const day = f.toDateString() === new Date().toDateString() ? "today" : f.toLocaleDateString(undefined, { weekday: "short" });
    $("night").innerHTML = `${left} item${left > 1 ? "s" : ""} left, <b>${dur(q.left_s)}</b> of fridge time: the night finishes at <b>${f.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</b> ${day}`;
  } else {
    $("night").textContent = `${left} item${left > 1 ? "s" : ""} left; estimating when the night finishes…`;
  }
}

// -- one run -----------------------------------------------------------------------------------------
const PHASE_COLORS = { ramp: "#5b9bd5", stabilize: "#ed7d31", settle: "#a5a5a5", measure: "#70ad47", suspended: "#c00000", park: "#7f6084" };

function drawRun(r) {
  $("title").innerHTML = `run ${esc(r.run_id)} <span class="muted">${esc(r.procedure)}</span> — <span class="st-${esc(r.status)}">${esc(r.status)}</span>`;
  $("message").textContent = r.message || "";
  const frac = r.points_total ? r.points_done / r.points_total : 0;
  $("bar").style.width = `${(100 * frac).toFixed(1)}%`;
  $("bartext").textContent = `${r.points_done} / ${r.points_total} points (${(100 * frac).toFixed(1)} %)`;
  const left = r.status === "running" ? `<span>fridge time left <b>${dur(r.estimated_left_s)}</b></span>` : "";
  const est = r.estimated_total_s ? `<span>estimated <b>${dur(r.estimated_total_s)}</b></span>` : "";
  $("times").innerHTML = `<span>fridge time elapsed <b id="elapsed">${dur(r.fridge_time_s)}</b></span>${left}${est}<span>started ${esc((r.created || "").replace("T", " "))}</span>${r.ended ? `<span>ended ${esc(r.ended.replace("T", " "))}</span>` : ""}`;
  const phases = r.phases || r.phases_estimated;
  if (phases) {
    const total = Object.values(phases).reduce((a, b) => a + b, 0) || 1;
    const label = r.phases ? "" : " (estimated)";
    $("phases").innerHTML = Object.entries(phases).filter(([, v]) => v > 0).map(([k, v]) =>
      `<div style="width:${(100 * v / total).toFixed(2)}%;background:${PHASE_COLORS[k] || "#888"}" title="${esc(k)}: ${dur(v)} (${(100 * v / total).toFixed(1)} %)${label}">${esc(k)} ${dur(v)}</div>`).join("");
    $("phases").title = r.phases ? "fridge time per phase" : "estimated fridge time per phase (the measured split comes at the end)";
    $("phasenote").textContent = r.phases ? "fridge time per phase, as measured" : "fridge time per phase, as estimated (the measured split comes when the run ends)";
  } else {
    $("phases").innerHTML = "";
    $("phasenote").textContent = "";
  }
  drawNow(r);
  drawOnline(r);
  drawChecks(r);
  drawInterruptions(r);
  $("log").textContent = (r.log || []).map((l) => `${l.time.replace(/T/, " ").slice(0, 19)}  ${l.message}`).join("\n");
}

function drawNow(r) {
  const now = r.now;
  if (!now) { $("now").innerHTML = `<tr><td class="muted">no point measured yet</td></tr>`; return; }
  const set = Object.entries(now.setpoints).map(([k, v]) => `<tr><td>${esc(NAMES[k] || k)} setpoint</td><td class="num">${si(v.value, v.units, 5)}</td></tr>`);
  const labels = { R: "R", T_mc: "T mixing chamber", T_sample: "T sample", B_meas: "B (supply)", V_g_meas: "V_g (source)", I_leak: "I_leak (gate)" };
  const read = Object.entries(now.readings).map(([k, v]) => `<tr><td>${esc(labels[k] || k)}</td><td class="num">${si(v.value, v.units, 4)}</td></tr>`);
  $("now").innerHTML = set.join("") + read.join("") + `<tr><td>at fridge time</td><td class="num">${dur(now.t_s)}</td></tr>`;
}

function drawOnline(r) {
  const o = r.online;
  if (!o) { $("online").innerHTML = r.dims && r.dims[0] === "T" && r.dims.length === 2 ? "after the second complete isotherm" : "not for this run's axes"; return; }
  const xu = o.x === "B" ? "T" : "V";
  const parts = [`<span class="verdict">${esc(o.verdict)}</span> from ${o.isotherms} isotherms`,
    `${esc(o.x)}<sub>c</sub> = <b>${siErr(o.x_c, o.x_c_err, xu)}</b>` +
      (o.collapse_x_c != null ? ` <span class="muted">(collapse: ${siErr(o.collapse_x_c, o.collapse_x_c_err, xu)})</span>` : ""),
    `R<sub>c</sub> = <b>${siErr(o.R_c, o.R_c_err, "Ohm")}</b>${o.R_c_h4e2 ? ` (${(+o.R_c_h4e2).toFixed(3)} h/4e²)` : ""}`];
  if (o.znu !== null && o.znu !== undefined) parts.push(`z·ν = <b>${(+o.znu).toPrecision(3)}${o.znu_err ? ` ± ${(+o.znu_err).toPrecision(2)}` : ""}</b>`);
  if (o.drift !== null && o.drift !== undefined) parts.push(`drift of the crossing with T: ${si(o.drift, xu + "/K", 2)}${o.drift_err ? ` ± ${si(o.drift_err, xu + "/K", 2)}` : ""}`);
  for (const e of o.excluded || []) parts.push(`excluded T = ${si(e.T, "K")} (${esc(e.reason)})`);
  if (r.truth && r.truth.B_c && o.x === "B") parts.push(`<span class="muted">simulated truth: B<sub>c</sub> = ${si(r.truth.B_c, "T", 5)}, R<sub>c</sub> = ${si(r.truth.R_c, "Ohm")}${r.truth.znu ? `, z·ν = ${(+r.truth.znu).toPrecision(3)}` : ""}</span>`);
  $("online").innerHTML = parts.join("<br>");
}

function drawChecks(r) {
  const parts = [];
  if (r.checks) {
    parts.push(`<b>${esc(r.checks.summary || "")}</b>`);
    for (const [k, v] of Object.entries(r.checks)) if (k !== "summary" && (typeof v === "string" || typeof v === "boolean")) parts.push(`${esc(k)}: ${esc(v)}`);
  }
  const stab = r.stabilization || [];
  if (stab.length) parts.push(`temperature stabilization: ${stab.map((s) => `${si(s.T, "K")} ${esc(s.outcome)} after ${dur(s.waited_s)}`).join("; ")}`);
  $("checks").innerHTML = parts.join("<br>") || (r.status === "running" ? "the procedure's verdict comes when the run completes" : "none for this procedure");
}

function drawInterruptions(r) {
  const items = (r.interruptions || []).map((e) => `at ${dur(e.t)} (point ${e.point}): ${esc(e.reason)} — ${esc(e.policy)}${e.waited_s ? `, waited ${dur(e.waited_s)}` : ""}${e.outcome ? `: ${esc(e.outcome)}` : ""}`);
  if (!items.length) for (const e of r.suspensions_live || []) items.push(`${esc(e.time.replace("T", " ").slice(0, 19))} ${esc(e.message)}`);
  $("interruptions").innerHTML = items.join("<br>") || "none";
}

// -- the plots ---------------------------------------------------------------------------------------
const LAYOUT = { uirevision: "keep", margin: { l: 64, r: 20, t: 36, b: 48 }, font: { size: 12 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff" };
const CONFIG = { displaylogo: false, responsive: true };
const TITLE = (s) => ({ text: s, font: { size: 13 } });
const label = (dim, sc) => `${NAMES[dim] || dim} [${sc.label}]`;

function decadeTicks(lo, hi) {
  const vals = [], text = [];
  const mantissas = hi - lo > 2.5 ? [1] : [1, 2, 5]; // wide ranges: decades only, so labels do not collide
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of mantissas) {
    const v = e + Math.log10(m);
    if (v >= lo - 1e-9 && v <= hi + 1e-9) { vals.push(v); text.push(si(10 ** v, "Ohm", 2)); }
  }
  return { vals, text };
}

function drawPlots(run, d) {
  LAYOUT.uirevision = `${state.runId}/${state.outer}`; // zoom survives redraws of the same plot
  const u = d.units || {};
  if (d.kind === "map") {
    const xs = axisScale(u[d.x_dim], d.heat.x), ys = axisScale(u[d.y_dim], d.heat.y);
    const z = d.heat.log10_R;
    const flat = z.flat().filter((v) => v !== null);
    const lo = flat.length ? Math.min(...flat) : 0, hi = flat.length ? Math.max(...flat) : 1;
    const ticks = decadeTicks(lo, hi);
    const outer = (d.outer || []).map((o) => `${NAMES[o.dim] || o.dim} = ${si(o.value, u[o.dim])}`).join(", ");
    Plotly.react("heat", [{
      type: "heatmap", x: scaled(d.heat.x, xs.f), y: scaled(d.heat.y, ys.f), z, zmin: lo, zmax: hi === lo ? lo + 1 : hi,
      colorscale: "Viridis", customdata: z.map((row) => row.map((v) => (v === null ? null : 10 ** v))),
      hovertemplate: `%{x:.4g} ${xs.label}, %{y:.4g} ${ys.label}<br>R = %{customdata:.4g} Ω<extra></extra>`,
      colorbar: { title: { text: "R" }, tickvals: ticks.vals, ticktext: ticks.text },
    }], { ...LAYOUT, title: TITLE(`R over ${NAMES[d.y_dim] || d.y_dim} and ${NAMES[d.x_dim] || d.x_dim} (log colour scale)${outer ? " at " + outer : ""}`),
      xaxis: { title: { text: label(d.x_dim, xs) }, zeroline: false }, yaxis: { title: { text: label(d.y_dim, ys) }, zeroline: false } }, CONFIG);
    drawOuter(d);
    drawCuts(run, d, xs);
    drawCollapse(d, xs);
  } else if (d.kind === "line") {
    const xs = axisScale(u[d.dims[0]], d.x);
    Plotly.react("heat", [{ type: "scatter", mode: "lines+markers", x: scaled(d.x, xs.f), y: d.R, name: "R" }],
      { ...LAYOUT, title: TITLE(`R over ${d.dims[0]}`), xaxis: { title: { text: label(d.dims[0], xs) } }, yaxis: { type: "log", title: { text: "R [Ω]" } } }, CONFIG);
    $("outer").innerHTML = ""; $("outer").dataset.html = "";
    Plotly.purge("cuts"); Plotly.purge("collapse");
    $("cuts").innerHTML = ""; $("collapse").innerHTML = "";
  }
  drawTimeline(run, d);
}

// a plan of three axes: which plane of the outer one to show (default: the one being measured)
function drawOuter(d) {
  const o = (d.outer || [])[0];
  if (!o || (d.outer || []).length > 1) { $("outer").innerHTML = ""; $("outer").dataset.html = ""; return; }
  const u = (d.units || {})[o.dim];
  const opts = o.values.map((v, i) => `<option value="${i}" ${state.outer === i ? "selected" : ""}>${si(v, u)}${i === o.measuring ? " (measuring)" : ""}</option>`);
  const html = `plane at ${esc(NAMES[o.dim] || o.dim)}: <select id="outersel"><option value="" ${state.outer === null ? "selected" : ""}>the one being measured</option>${opts.join("")}</select>`;
  if ($("outer").dataset.html === html) return; // an open drop-down is not closed by a redraw
  $("outer").dataset.html = html;
  $("outer").innerHTML = html;
  $("outersel").onchange = (e) => { state.outer = e.target.value === "" ? null : +e.target.value; refresh(); };
}

function drawCuts(run, d, xs) {
  const u = d.units || {};
  const ys = axisScale(u[d.y_dim], d.cuts.map((c) => c.value));
  const traces = d.cuts.map((c) => ({
    type: "scatter", mode: "lines+markers", marker: { size: 4 }, x: scaled(c.x, xs.f), y: c.R,
    name: `${NAMES[d.y_dim] || d.y_dim} = ${+(c.value / ys.f).toPrecision(4)} ${ys.label}`,
  }));
  const o = run.online;
  if (o && o.x === d.x_dim && o.x_c !== null && o.R_c !== null) {
    const xc = o.x_c, xe = o.x_c_err;
    traces.push({
      type: "scatter", mode: "markers", x: [xc / xs.f], y: [o.R_c], name: `crossing (${o.isotherms} isotherms)`,
      marker: { symbol: "x-thin", size: 14, line: { width: 3, color: "#c00000" }, color: "#c00000" },
      error_x: { type: "data", array: [xe ? xe / xs.f : 0], color: "#c00000", thickness: 2, width: 6 },
      error_y: { type: "data", array: [o.R_c_err || 0], color: "#c00000", thickness: 2, width: 6 },
      hovertemplate: `crossing ${NAMES[d.x_dim]}<sub>c</sub> = %{x:.5g} ${xs.label}, R<sub>c</sub> = %{y:.5g} Ω<extra></extra>`,
    });
  }
  Plotly.react("cuts", traces, { ...LAYOUT, title: TITLE(`Line cuts: R(${NAMES[d.x_dim] || d.x_dim}) at each ${NAMES[d.y_dim] || d.y_dim}`),
    xaxis: { title: { text: label(d.x_dim, xs) } }, yaxis: { type: "log", title: { text: "R [Ω]" } }, legend: { font: { size: 10 } } }, CONFIG);
}

function drawCollapse(d, xs) {
  const c = d.collapse;
  if (!c || !c.curves.length) {
    const why = d.y_dim === "T" ? "after three complete isotherms" : "for isotherms over T (not this run's axes)";
    Plotly.react("collapse", [], { ...LAYOUT, title: TITLE(`Scaling collapse: ${why}`), xaxis: { visible: false }, yaxis: { visible: false } }, CONFIG);
    return;
  }
  const ys = axisScale("K", c.curves.map((k) => k.value));
  const traces = c.curves.map((k) => ({ type: "scatter", mode: "markers", marker: { size: 5 }, x: k.u, y: k.r, name: `T = ${+(k.value / ys.f).toPrecision(4)} ${ys.label}` }));
  Plotly.react("collapse", traces, { ...LAYOUT, title: TITLE(`Scaling collapse, z·ν = ${(+c.znu).toPrecision(3)}`),
    xaxis: { title: { text: `(${NAMES[d.x_dim]} − ${NAMES[d.x_dim]}_c)·T^(−1/zν) [${UNIT[d.units[d.x_dim]] || ""}·K^(−1/zν)]` } },
    yaxis: { type: "log", title: { text: "R / R_c" } }, legend: { font: { size: 10 } } }, CONFIG);
}

function drawTimeline(run, d) {
  const tl = d.timeline || { t: [], points: [] };
  const end = Math.max(run.fridge_time_s || 0, ...(tl.t || [0]));
  const [f, unit] = end > 7200 ? [3600, "h"] : end > 120 ? [60, "min"] : [1, "s"];
  const hours = (tl.t || []).map((t) => t / f);
  const shapes = [], ann = [];
  for (const e of run.interruptions || []) {
    const t0 = e.t / f, t1 = (e.t + (e.waited_s || 0)) / f;
    shapes.push({ type: "rect", xref: "x", yref: "paper", x0: t0, x1: Math.max(t1, t0 + end / f / 400), y0: 0, y1: 1, fillcolor: "rgba(192,0,0,.18)", line: { color: "#c00000", width: 1 } });
    ann.push({ x: t0, y: 1, xref: "x", yref: "paper", text: esc(e.reason).slice(0, 40), showarrow: false, font: { size: 10, color: "#c00000" }, xanchor: "left", yanchor: "top" });
  }
  Plotly.react("timeline", [{ type: "scatter", mode: "lines", x: hours, y: tl.points, name: "points measured", line: { color: "#1a6fb3" } }],
    { ...LAYOUT, title: TITLE("Time line: points measured over fridge time (suspensions shaded)"), shapes, annotations: ann,
      xaxis: { title: { text: `fridge time [${unit}]` }, range: [0, end / f] }, yaxis: { title: { text: "points measured" }, rangemode: "tozero" }, showlegend: false }, CONFIG);
}

$("follow").onchange = (e) => { state.follow = e.target.checked; connect(); refresh(); };
connect();
refresh();
setInterval(schedule, 10000); // the queue's estimates, a crashed run's status: also without a change on disk
