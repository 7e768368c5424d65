// feltsafe review: one session - overview, timeline, flags, acknowledgement, exports.
//
// The timeline is one plotly figure with a shared time axis (minutes since the start):
// flags (markers on the top row, a line to their end), talk share over the last 5 min
// per role, interruptions in the last 5 min per role, MOS, audio loss and jitter per
// role (the media each participant sends, as received). Freezes and the disclosure
// window are bands across every row: a timeline point marks a freeze if the video was
// frozen at any tick since the previous point, so a band spans from that previous point.

import {
  SEVERITIES, apiJson, download, el, formatClock, formatDuration, formatElapsed,
  formatTime, setStatus, severityBadges, signIn,
} from "./review.js";

const ROLES = ["therapist", "client"];
const ROLE_COLOR = { therapist: "#6f42c1", client: "#d2691e" };
const SEVERITY_COLOR = { alert: "#cf222e", warn: "#9a6700", info: "#0969da" };
const SEVERITY_SYMBOL = { alert: "diamond", warn: "triangle-up", info: "circle" };

const sessionId = new URLSearchParams(location.search).get("id");
const status = document.getElementById("status");
let session = null;

// -- overview -----------------------------------------------------------------------

function percent(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value * 100)} %`;
}

function number(value, digits = 2) {
  return value === null || value === undefined ? "—" : value.toFixed(digits);
}

function renderOverview() {
  document.getElementById("session-id").textContent = session.id;
  document.title = `feltsafe review: session ${session.id}`;
  const facts = [
    ["Started", formatTime(session.started_at)],
    ["Ended", session.live ? "live now" : formatTime(session.ended_at)],
    ["Duration", session.live ? "—" : formatDuration(session.duration_s)],
    ["Mode", session.mode + (session.profile ? ` · ${session.profile}` : "")],
    ["Flags", severityBadges(session.flag_counts)],
    ["Unacknowledged", String(session.unacknowledged)],
  ];
  document.getElementById("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const table = document.getElementById("summary");
  table.hidden = !session.summary;
  if (!session.summary) return;
  table.querySelector("tbody").replaceChildren(...ROLES.map((role) => {
    const s = session.summary[role];
    return el("tr", {},
      el("td", {}, role),
      el("td", {}, percent(s.talk_share)),
      el("td", {}, s.interruptions_count ?? "—"),
      el("td", {}, s.freeze_count ?? "—"),
      el("td", {}, s.freeze_duration_s === null ? "—" : `${number(s.freeze_duration_s, 1)} s`),
      el("td", {}, number(s.mos_p10)), el("td", {}, number(s.mos_p50)), el("td", {}, number(s.mos_p90)));
  }));
}

// -- timeline -----------------------------------------------------------------------

function series(points, name, scale = 1) {
  return points.map((p) => {
    const v = p.figures[name];
    return typeof v === "number" ? v * scale : null;
  });
}

/** Bands [from, to] (minutes) where a boolean figure was true. */
function bands(points, name) {
  const out = [];
  let previous = 0;
  for (const p of points) {
    const at = p.elapsed_s / 60;
    if (p.figures[name] === true) {
      const last = out[out.length - 1];
      if (last && Math.abs(last[1] - previous) < 1e-9) last[1] = at;
      else out.push([previous, at]);
    }
    previous = at;
  }
  return out;
}

function flagHover(flag) {
  const evidence = Object.entries(flag.evidence).map(([k, v]) => `${k}: ${v}`).join("<br>");
  const title = flag.title.replace(/[<>&]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;" })[c]);
  return `<b>${title}</b><br>${flag.severity} at ${formatElapsed(flag.start_elapsed_s)}<br>${evidence}`;
}

function renderChart(points, flags) {
  const x = points.map((p) => p.elapsed_s / 60);
  const lastPoint = points.length ? points[points.length - 1].elapsed_s : 0;
  const lastFlag = Math.max(0, ...flags.map((f) => f.end_elapsed_s ?? f.start_elapsed_s));
  const end = Math.max(session.duration_s ?? 0, lastPoint, lastFlag, 60);
  const rows = [
    { key: "flags", title: "Flags (hover for the evidence, click to jump to the flag)", height: 0.07 },
    { key: "talk", title: "Talk share over the last 5 min (%)", height: 0.17, range: [0, 100] },
    { key: "interruptions", title: "Interruptions in the last 5 min", height: 0.15 },
    { key: "mos", title: "Audio quality: MOS (E-model, 1 to 4.5)", height: 0.2, range: [1, 4.5] },
    { key: "loss", title: "Audio packets lost (%)", height: 0.2 },
    { key: "jitter", title: "Audio jitter (ms)", height: 0.2 },
  ];
  const gap = 0.045;
  const usable = 1 - gap * (rows.length - 1);
  const layout = {
    height: 680,
    margin: { l: 48, r: 16, t: 18, b: 40 },
    hovermode: "closest",
    showlegend: true,
    legend: { orientation: "h", x: 0, y: -0.08 },
    xaxis: { title: { text: "minutes since the session began" }, anchor: `y${rows.length}`, zeroline: false, range: [0, end / 60] },
    shapes: [],
    annotations: [],
    font: { family: "system-ui, sans-serif", size: 11 },
    paper_bgcolor: "#ffffff",
    plot_bgcolor: "#ffffff",
  };
  let top = 1;
  rows.forEach((row, i) => {
    const axis = i === 0 ? "yaxis" : `yaxis${i + 1}`;
    row.y = i === 0 ? "y" : `y${i + 1}`;
    const height = row.height * usable;
    layout[axis] = {
      domain: [Math.max(0, top - height), top],
      range: row.range,
      fixedrange: true,
      zeroline: false,
      nticks: 4,
      showticklabels: row.key !== "flags",
    };
    // Row titles sit in the gap above each row (axis titles would collide on short rows).
    layout.annotations.push({
      text: row.title, xref: "paper", yref: "paper", x: 0, y: top, xanchor: "left", yanchor: "bottom",
      showarrow: false, font: { size: 11, color: "#57606a" },
    });
    top -= height + gap;
  });
  const y = Object.fromEntries(rows.map((r) => [r.key, r.y]));
  const traces = [];
  for (const role of ROLES) {
    const line = { color: ROLE_COLOR[role], width: 1.8 };
    const common = { x, mode: "lines", line, legendgroup: role, connectgaps: false };
    traces.push({ ...common, y: series(points, `conversation.${role}.talk_share_5m`, 100), yaxis: y.talk, name: role, hovertemplate: `${role} talk share %{y:.0f} %<extra></extra>` });
    traces.push({ ...common, y: series(points, `conversation.interruptions_by_${role}_5m`), yaxis: y.interruptions, name: `${role} interruptions`, showlegend: false, line: { ...line, shape: "hv" }, hovertemplate: `interruptions by ${role}: %{y}<extra></extra>` });
    traces.push({ ...common, y: series(points, `${role}.network.mos`), yaxis: y.mos, name: `${role} MOS`, showlegend: false, hovertemplate: `${role} MOS %{y:.2f}<extra></extra>` });
    traces.push({ ...common, y: series(points, `${role}.audio.loss_ratio`, 100), yaxis: y.loss, name: `${role} loss`, showlegend: false, hovertemplate: `${role} audio loss %{y:.1f} %<extra></extra>` });
    traces.push({ ...common, y: series(points, `${role}.audio.jitter_ms`), yaxis: y.jitter, name: `${role} jitter`, showlegend: false, hovertemplate: `${role} jitter %{y:.0f} ms<extra></extra>` });
  }
  for (const severity of SEVERITIES) {
    const these = flags.filter((f) => f.severity === severity);
    if (!these.length) continue;
    traces.push({
      x: these.map((f) => f.start_elapsed_s / 60), y: these.map(() => 0), yaxis: y.flags,
      mode: "markers", name: `${severity} flag`, legendgroup: `flag-${severity}`,
      marker: { size: 13, color: SEVERITY_COLOR[severity], symbol: SEVERITY_SYMBOL[severity], line: { width: 1, color: "#fff" } },
      customdata: these.map((f) => f.key), text: these.map(flagHover), hovertemplate: "%{text}<extra></extra>",
    });
    for (const f of these) {
      const end = f.end_elapsed_s ?? (points.length ? points[points.length - 1].elapsed_s : f.start_elapsed_s);
      layout.shapes.push({ type: "line", xref: "x", yref: y.flags, x0: f.start_elapsed_s / 60, x1: end / 60, y0: 0, y1: 0, line: { color: SEVERITY_COLOR[severity], width: 3 } });
    }
  }
  const bandStyles = [
    ...ROLES.map((role) => ({ name: `${role} video frozen`, figure: `${role}.video.frozen`, color: ROLE_COLOR[role], opacity: 0.22 })),
    { name: "disclosure window", figure: "session.disclosure", color: "#1a7f37", opacity: 0.08 },
  ];
  for (const style of bandStyles) {
    bands(points, style.figure).forEach(([x0, x1], i) => {
      layout.shapes.push({
        type: "rect", xref: "x", yref: "paper", x0, x1, y0: 0, y1: 1, layer: "below",
        fillcolor: style.color, opacity: style.opacity, line: { width: 0 },
        name: style.name, legendgroup: style.name, showlegend: i === 0,
      });
    });
  }
  const chart = document.getElementById("chart");
  // No mode bar: drag to zoom on time, double-click to reset (calm, nothing to learn).
  Plotly.newPlot(chart, traces, layout, { responsive: true, displayModeBar: false });
  chart.on("plotly_click", (event) => {
    const key = event.points?.[0]?.customdata;
    if (key) focusFlag(key);
  });
  chart.dataset.points = String(points.length);
  chart.dataset.flags = String(flags.length);
}

// -- flags --------------------------------------------------------------------------

function focusFlag(key) {
  const item = document.querySelector(`li.flag[data-key="${CSS.escape(key)}"]`);
  if (!item) return;
  item.scrollIntoView({ behavior: "smooth", block: "center" });
  item.classList.add("highlight");
  setTimeout(() => item.classList.remove("highlight"), 1600);
}

function valueText(value) {
  if (value === null || value === undefined) return "unknown";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  return String(value);
}

function pairs(title, mapping) {
  const entries = Object.entries(mapping);
  return el("div", {},
    el("strong", {}, title),
    entries.length
      ? el("table", {}, el("tbody", {}, entries.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, valueText(v))))))
      : el("p", { class: "muted" }, "none"));
}

function ackStatus(ack) {
  return el("p", { class: "ack-status" },
    `Acknowledged by ${ack.by} at ${formatTime(ack.at)}`,
    ack.note ? el("span", {}, ": ", el("span", { class: "note" }, ack.note)) : ".");
}

function ackForm(flag, item) {
  const note = el("textarea", { name: "note", maxlength: 2000, placeholder: "Note (optional): what you saw, what you will do", "aria-label": "Acknowledgement note" });
  const button = el("button", { class: "primary", type: "submit" }, "Acknowledge");
  const error = el("p", { class: "status error" });
  const form = el("form", {
    class: "ack-form",
    onsubmit: async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        const text = note.value.trim();
        const updated = await apiJson(`/api/flags/${encodeURIComponent(flag.key)}/ack`, { method: "POST", body: { note: text || null } });
        item.replaceWith(flagItem(updated));
        session.unacknowledged = Math.max(0, session.unacknowledged - (flag.acknowledgement ? 0 : 1));
        renderOverview();
      } catch (failure) {
        error.textContent = `Could not acknowledge: ${failure.message}`;
        button.disabled = false;
      }
    },
  }, note, button);
  return [form, error];
}

function flagItem(flag) {
  const item = el("li", { class: `flag sev-${flag.severity}`, dataset: { key: flag.key, acknowledged: String(Boolean(flag.acknowledgement)) } });
  const when = `at ${formatElapsed(flag.start_elapsed_s)} (${formatClock(flag.start_at)})` +
    (flag.end_elapsed_s === null ? ", still firing at the end" : `, for ${formatDuration(flag.end_elapsed_s - flag.start_elapsed_s)}`);
  const parts = [
    el("h3", {}, el("span", { class: `badge ${flag.severity}` }, flag.severity), el("span", { class: "title" }, flag.title), el("span", { class: "when" }, when)),
    flag.message ? el("p", {}, flag.message) : null,
    flag.hint ? el("p", { class: "hint" }, flag.hint) : null,
    flag.undermines.length ? el("p", { class: "chips" }, el("span", { class: "muted" }, "undermines "), flag.undermines.map((u) => el("span", {}, u.replace("_", " ")))) : null,
    el("div", { class: "details" }, pairs("Evidence", flag.evidence), pairs("Context at onset", flag.context)),
    el("div", { class: "ack" }, flag.acknowledgement ? ackStatus(flag.acknowledgement) : ackForm(flag, item)),
  ];
  item.append(...parts.filter(Boolean)); // (DOM append would write "null" for a missing part)
  return item;
}

function renderFlags(flags) {
  const list = document.getElementById("flags");
  list.replaceChildren(...(flags.length ? flags.map(flagItem) : [el("li", { class: "muted" }, "No flags in this session.")]));
  document.getElementById("flag-counts").replaceChildren(...severityBadges(session.flag_counts));
}

// -- loading ------------------------------------------------------------------------

async function load() {
  if (!sessionId) {
    setStatus(status, "No session given (session.html?id=...).", { error: true });
    return;
  }
  setStatus(status, "Loading…");
  const base = `/api/sessions/${encodeURIComponent(sessionId)}`;
  try {
    const [record, flagList, timeline] = await Promise.all([apiJson(base), apiJson(`${base}/flags`), apiJson(`${base}/timeline`)]);
    session = record;
    renderOverview();
    renderFlags(flagList.flags);
    renderChart(timeline.points, flagList.flags);
    setStatus(status, timeline.points.length ? "" : "No timeline samples were stored for this session.");
  } catch (error) {
    setStatus(status, `Could not load the session: ${error.message}`, { error: true });
  }
}

for (const kind of ["csv", "json"]) {
  document.getElementById(`export-${kind}`).addEventListener("click", async () => {
    try {
      await download(`/api/sessions/${encodeURIComponent(sessionId)}/export.${kind}`, `feltsafe-${sessionId}-flags.${kind}`);
    } catch (error) {
      setStatus(status, `Export failed: ${error.message}`, { error: true });
    }
  });
}

signIn(load);
