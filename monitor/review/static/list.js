// feltsafe review: the session list. Filters live in the page's query string (no
// secrets there), so a filtered list survives a reload and can be bookmarked.

import {
  apiJson, el, formatDuration, formatTime, setStatus, severityBadges, signIn,
} from "./review.js";

const PAGE = 25;
const form = document.getElementById("filters");
const status = document.getElementById("status");
const body = document.querySelector("#sessions tbody");

function filtersFromUrl() {
  const query = new URLSearchParams(location.search);
  for (const name of ["from", "to", "mode", "min_severity"]) form.elements[name].value = query.get(name) || "";
  form.elements.unacknowledged.checked = query.get("unacknowledged") === "true";
  return { query, offset: Number(query.get("offset") || 0) };
}

// A date input is a local calendar day: the API takes instants, "to" exclusive.
function localMidnight(day, plusDays = 0) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function apiQuery(query, offset) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (query.get("from")) params.set("from", localMidnight(query.get("from")));
  if (query.get("to")) params.set("to", localMidnight(query.get("to"), 1));
  for (const name of ["mode", "min_severity"]) if (query.get(name)) params.set(name, query.get(name));
  if (query.get("unacknowledged") === "true") params.set("unacknowledged", "true");
  return params;
}

function row(session) {
  const href = `session.html?id=${encodeURIComponent(session.id)}`;
  const open = () => { location.href = href; };
  return el("tr", { class: "session-row", dataset: { session: session.id }, onclick: open },
    el("td", {}, el("a", { href }, formatTime(session.started_at))),
    el("td", {}, session.live ? el("span", { class: "badge live" }, "live") : formatDuration(session.duration_s)),
    el("td", {}, session.mode, session.profile ? el("span", { class: "muted" }, ` · ${session.profile}`) : null),
    el("td", {}, severityBadges(session.flag_counts)),
    el("td", {}, session.unacknowledged ? String(session.unacknowledged) : el("span", { class: "muted" }, "0")),
    el("td", { class: "muted" }, session.id),
  );
}

async function load() {
  const { query, offset } = filtersFromUrl();
  setStatus(status, "Loading…");
  try {
    const page = await apiJson(`/api/sessions?${apiQuery(query, offset)}`);
    body.replaceChildren(...page.sessions.map(row));
    const last = Math.min(page.offset + page.sessions.length, page.total);
    setStatus(status, page.total ? `${page.total} session${page.total === 1 ? "" : "s"}` : "No sessions match.");
    document.getElementById("page").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
    document.getElementById("newer").disabled = page.offset === 0;
    document.getElementById("older").disabled = last >= page.total;
  } catch (error) {
    setStatus(status, `Could not load sessions: ${error.message}`, { error: true });
  }
}

function navigate(changes) {
  const query = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(changes)) {
    if (value === "" || value === null || value === false) query.delete(name);
    else query.set(name, String(value));
  }
  history.pushState(null, "", `${location.pathname}${query.size ? "?" + query : ""}`);
  load();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const f = form.elements;
  navigate({
    from: f.from.value, to: f.to.value, mode: f.mode.value, min_severity: f.min_severity.value,
    unacknowledged: f.unacknowledged.checked ? "true" : "", offset: "",
  });
});
form.addEventListener("reset", () => {
  setTimeout(() => navigate({ from: "", to: "", mode: "", min_severity: "", unacknowledged: "", offset: "" }));
});
document.getElementById("newer").addEventListener("click", () => {
  const offset = Math.max(0, Number(new URLSearchParams(location.search).get("offset") || 0) - PAGE);
  navigate({ offset: offset || "" });
});
document.getElementById("older").addEventListener("click", () => {
  navigate({ offset: Number(new URLSearchParams(location.search).get("offset") || 0) + PAGE });
});
addEventListener("popstate", load);

signIn(load);
